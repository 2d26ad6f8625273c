// Package keyfile reads and writes the files that hold E4 keys and device
// identities, in the formats the e4 command uses.
//
// A key file holds one key as hex text on one line, as `e4 keygen` and
// `e4 c2 client add --key-out` write it. An identity file holds what a
// device needs to build its E4 client, one "field: value" per line:
//
//	# E4 identity of a device: keep it secret
//	name: thermostat-42
//	key: 5f0c...  (64 hex characters: the client key; pk mode: 128, the Ed25519 private key)
//
// with optionally "id" (32 hex characters, instead of or beside name),
// "mode: pk" and "c2_public_key" (pk mode). Files are written atomically
// with mode 0600 (internal/atomicfile), and errors name the file
// and what is wrong with it, never its content.
package keyfile

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/e4-iot/e4kit/internal/atomicfile"
)

// maxFileSize bounds what is read from a key or identity file: both are a
// few hundred bytes, and a wrong path (a log, a device) must not fill
// memory.
const maxFileSize = 64 << 10

// fileMode is the mode of every file this package writes.
const fileMode = 0o600

// ReadKey reads a key written as hex text. With size > 0 the key must be
// exactly size bytes long (e4.KeyLen for a symmetric key); with size 0 any
// non-empty key is accepted. Surrounding white space is ignored.
func ReadKey(path string, size int) ([]byte, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	key, err := decodeHex(bytes.TrimSpace(data), size)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return key, nil
}

// WriteKey writes key to a new file at path as one hex line, atomically,
// with mode 0600. It refuses to replace an existing file (the error wraps
// fs.ErrExist): a key file overwritten by mistake locks a device out.
func WriteKey(path string, key []byte) error {
	if err := refuseExisting(path); err != nil {
		return err
	}
	return ReplaceKey(path, key)
}

// ReplaceKey writes key to path as WriteKey does, replacing the file if it
// exists: a reader sees the old key or the new one, never a mix.
func ReplaceKey(path string, key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("keyfile: %s: refusing to write an empty key", path)
	}
	line := make([]byte, hex.EncodedLen(len(key))+1)
	defer clear(line)
	hex.Encode(line, key)
	line[len(line)-1] = '\n'
	if err := atomicfile.WriteFile(path, line, fileMode); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	return nil
}

// readSmall reads a whole file of at most maxFileSize bytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(bufio.NewReader(f), maxFileSize+1))
	if err != nil {
		clear(data)
		return nil, fmt.Errorf("keyfile: reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		clear(data)
		return nil, fmt.Errorf("keyfile: %s: larger than %d bytes, not a key file", path, maxFileSize)
	}
	return data, nil
}

// decodeHex decodes a key of size bytes (any non-zero size when size is
// 0), with an error that says what is wrong without showing the text.
func decodeHex(text []byte, size int) ([]byte, error) {
	if len(text) == 0 {
		return nil, errors.New("empty, want a key in hex")
	}
	key := make([]byte, hex.DecodedLen(len(text)))
	n, err := hex.Decode(key, text)
	if err != nil {
		clear(key)
		var bad hex.InvalidByteError
		if errors.As(err, &bad) {
			return nil, fmt.Errorf("not hex text: character %d is not a hex digit", bytes.IndexByte(text, byte(bad))+1)
		}
		return nil, errors.New("not hex text: odd number of hex digits")
	}
	key = key[:n]
	if size > 0 && len(key) != size {
		clear(key)
		return nil, fmt.Errorf("want a %d-byte key (%d hex characters), found %d bytes", size, 2*size, n)
	}
	return key, nil
}

// refuseExisting returns an error wrapping fs.ErrExist when path exists.
func refuseExisting(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("keyfile: %s: %w; remove it first to replace it", path, fs.ErrExist)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("keyfile: %w", err)
	}
}
