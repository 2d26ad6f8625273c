package seal

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/e4-iot/e4kit/internal/atomicfile"
)

// Argon2id parameters for passphrase-derived master keys. They cost about
// 64 MiB and a fraction of a second once, at C2 start.
const (
	passphraseTime    = 3
	passphraseMemory  = 64 * 1024
	passphraseThreads = 2
	// MinPassphraseLen is the shortest passphrase accepted.
	MinPassphraseLen = 16
	// SaltSize is the size of the salt KeyFromPassphrase needs.
	SaltSize = 16
)

// GenerateKey returns a new random master key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	return key, nil
}

// ParseKey decodes a master key written as 64 hex digits or as base64 (the
// forms accepted in files and environment variables); surrounding space is
// ignored. Errors never echo the input.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if key, err := hex.DecodeString(text); err == nil && len(key) == KeySize {
		return key, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(text); err == nil && len(key) == KeySize {
			return key, nil
		}
	}
	return nil, fmt.Errorf("seal: master key must be %d bytes written as 64 hex digits or base64", KeySize)
}

// KeyFromEnv reads a master key from the environment variable name.
func KeyFromEnv(name string) ([]byte, error) {
	text, ok := os.LookupEnv(name)
	if !ok || text == "" {
		return nil, fmt.Errorf("seal: environment variable %s is not set", name)
	}
	key, err := ParseKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return key, nil
}

// KeyFromFile reads a master key from a file holding it as text (hex or
// base64) or as exactly 32 raw bytes. The file must not be readable by
// group or others.
func KeyFromFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("seal: master key file: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("seal: master key file %s has mode %v; it must not be accessible by group or others (chmod 600)", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: master key file: %w", err)
	}
	if len(data) == KeySize && !isText(data) {
		return data, nil
	}
	key, err := ParseKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// WriteKeyFile writes a new random master key as hex to path, atomically
// and with mode 0600, refusing to replace an existing file.
func WriteKeyFile(path string) ([]byte, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("seal: %s already exists; refusing to overwrite a master key", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("seal: %w", err)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("seal: writing master key: %w", err)
	}
	return key, nil
}

// KeyFromPassphrase derives a master key from a passphrase with Argon2id.
// The salt is not secret; C2 keeps it in its database so the same
// passphrase opens the same database.
func KeyFromPassphrase(passphrase string, salt []byte) ([]byte, error) {
	if len(passphrase) < MinPassphraseLen {
		return nil, fmt.Errorf("seal: passphrase must be at least %d characters", MinPassphraseLen)
	}
	if len(salt) != SaltSize {
		return nil, fmt.Errorf("seal: salt must be %d bytes", SaltSize)
	}
	return argon2.IDKey([]byte(passphrase), salt, passphraseTime, passphraseMemory, passphraseThreads, KeySize), nil
}

func isText(data []byte) bool {
	for _, b := range data {
		if b < 0x20 || b > 0x7e {
			if b != '\n' && b != '\r' && b != '\t' {
				return false
			}
		}
	}
	return true
}
