package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustKeyring(t *testing.T, active []byte, older ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(active, older...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k := mustKeyring(t, key)
	for _, size := range []int{0, 1, 32, 1000} {
		value := bytes.Repeat([]byte{0xA5}, size)
		sealed, err := k.Seal(value, "client-key/01")
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != size+Overhead {
			t.Fatalf("sealed %d bytes into %d, want %d", size, len(sealed), size+Overhead)
		}
		if size >= 8 && bytes.Contains(sealed, value[:8]) {
			t.Fatal("sealed value contains the plaintext")
		}
		got, err := k.Open(sealed, "client-key/01")
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("Open = %x, %v; want %x", got, err, value)
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k := mustKeyring(t, key)
	a, err := k.Seal([]byte("same"), "b")
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal([]byte("same"), "b")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are identical: nonce not random")
	}
}

func TestOpenRejectsOtherRowTamperingAndTruncation(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k := mustKeyring(t, key)
	sealed, err := k.Seal([]byte("topic key bytes!"), "topic-key/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(sealed, "topic-key/b"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open under another row's binding: %v, want ErrCorrupt", err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := k.Open(bad, "topic-key/a"); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	for n := 0; n < len(sealed); n++ {
		if _, err := k.Open(sealed[:n], "topic-key/a"); err == nil {
			t.Fatalf("truncation to %d bytes went unnoticed", n)
		}
	}
}

func TestWrongMasterKeyIsNamed(t *testing.T) {
	k1, err1 := GenerateKey()
	k2, err2 := GenerateKey()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	sealed, err := mustKeyring(t, k1).Seal([]byte("x"), "r")
	if err != nil {
		t.Fatal(err)
	}
	_, err = mustKeyring(t, k2).Open(sealed, "r")
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
}

func TestKeyringRotation(t *testing.T) {
	old, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cur, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, err := mustKeyring(t, old).Seal([]byte("v"), "r")
	if err != nil {
		t.Fatal(err)
	}
	k := mustKeyring(t, cur, old)
	if got, err := k.Open(sealedOld, "r"); err != nil || string(got) != "v" {
		t.Fatalf("old value: %q, %v", got, err)
	}
	sealedNew, err := k.Seal([]byte("v"), "r")
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := KeyIDOf(sealedNew); id != IDOf(cur) || id != k.ActiveID() {
		t.Fatalf("new value sealed under %v, want active key %v", id, IDOf(cur))
	}
	if id, _ := KeyIDOf(sealedOld); id != IDOf(old) {
		t.Fatalf("KeyIDOf(old) = %v", id)
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	if _, err := NewKeyring(make([]byte, 31)); err == nil {
		t.Fatal("31-byte key accepted")
	}
	good, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeyring(good, make([]byte, 5)); err == nil {
		t.Fatal("5-byte older key accepted")
	}
}

func TestParseKeyForms(t *testing.T) {
	key, _ := GenerateKey()
	for _, text := range []string{
		hex.EncodeToString(key), " " + hex.EncodeToString(key) + "\n",
		base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key),
	} {
		got, err := ParseKey(text)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("ParseKey(%q) = %x, %v", text, got, err)
		}
	}
	secret := hex.EncodeToString(key[:31])
	_, err := ParseKey(secret)
	if err == nil {
		t.Fatal("31-byte key accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatal("error message echoes the key text")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	key, err := WriteKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	if _, err := WriteKeyFile(path); err == nil {
		t.Fatal("WriteKeyFile replaced an existing master key")
	}
	got, err := KeyFromFile(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("KeyFromFile = %x, %v", got, err)
	}
	raw := filepath.Join(dir, "raw.key")
	rawKey := bytes.Repeat([]byte{0x01}, KeySize)
	if err := os.WriteFile(raw, rawKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := KeyFromFile(raw); err != nil || !bytes.Equal(got, rawKey) {
		t.Fatalf("raw key file: %x, %v", got, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := KeyFromFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
}

func TestKeyFromEnv(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("E4_TEST_MASTER", hex.EncodeToString(key))
	if got, err := KeyFromEnv("E4_TEST_MASTER"); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("KeyFromEnv = %x, %v", got, err)
	}
	if _, err := KeyFromEnv("E4_TEST_UNSET_VARIABLE"); err == nil {
		t.Fatal("unset variable accepted")
	}
}

func TestKeyFromPassphrase(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, SaltSize)
	a, err := KeyFromPassphrase("correct horse battery staple", salt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := KeyFromPassphrase("correct horse battery staple", salt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := KeyFromPassphrase("correct horse battery staplf", salt)
	if err != nil {
		t.Fatal(err)
	}
	otherSalt := bytes.Repeat([]byte{8}, SaltSize)
	d, err := KeyFromPassphrase("correct horse battery staple", otherSalt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, d) || len(a) != KeySize {
		t.Fatal("passphrase derivation is not a deterministic function of passphrase and salt")
	}
	if _, err := KeyFromPassphrase("short", salt); err == nil {
		t.Fatal("short passphrase accepted")
	}
	if _, err := KeyFromPassphrase("correct horse battery staple", salt[:4]); err == nil {
		t.Fatal("short salt accepted")
	}
}
