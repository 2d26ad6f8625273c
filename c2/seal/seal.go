// Package seal encrypts the secrets C2 keeps in its database (client keys,
// topic keys, the C2 private key, queued commands) under a master key that
// never enters the database.
//
// A sealed value is
//
//	version (1 byte) || key id (4 bytes) || nonce (24 bytes) || XChaCha20-Poly1305 ciphertext
//
// The associated data is the header followed by a caller-chosen binding that
// names the value's row (for example "client-key/<id>"), so a sealed value
// copied into another row, or under another key id, fails to open. The key
// id is derived from the master key, so opening with the wrong master key is
// reported as such rather than as corruption.
package seal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Version is the format version written by this package.
const Version = 1

// KeySize is the size of a master key.
const KeySize = chacha20poly1305.KeySize

const headerSize = 1 + 4 + chacha20poly1305.NonceSizeX

// Overhead is how many bytes sealing adds to a value.
const Overhead = headerSize + chacha20poly1305.Overhead

var (
	// ErrUnknownKey reports a value sealed under a master key that is not
	// in the keyring (usually: C2 was started with the wrong master key).
	ErrUnknownKey = errors.New("seal: value was sealed under a master key that is not loaded")
	// ErrCorrupt reports a sealed value that is malformed or fails
	// authentication (tampered, truncated, or moved to another row).
	ErrCorrupt = errors.New("seal: sealed value is corrupt or does not belong to this row")
)

// KeyID identifies a master key without revealing it.
type KeyID uint32

// String formats the id as 8 hex digits.
func (id KeyID) String() string { return fmt.Sprintf("%08x", uint32(id)) }

// IDOf returns the key id of a master key.
func IDOf(key []byte) KeyID {
	sum := sha256.Sum256(append([]byte("e4kit seal key id\x00"), key...))
	return KeyID(binary.BigEndian.Uint32(sum[:4]))
}

// Keyring seals with one active master key and opens with any key it holds,
// so master keys can be rotated by re-sealing values: c2.Rekey (the
// command "e4 c2 rekey") opens every value with a keyring holding the new
// and the old key and seals it again under the new one. A Keyring is safe
// for concurrent use once built.
type Keyring struct {
	active KeyID
	keys   map[KeyID]*sealer
}

type sealer struct {
	aead interface {
		Seal(dst, nonce, plaintext, additionalData []byte) []byte
		Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	}
}

// NewKeyring returns a keyring that seals under active and can also open
// values sealed under any of older.
func NewKeyring(active []byte, older ...[]byte) (*Keyring, error) {
	k := &Keyring{keys: make(map[KeyID]*sealer)}
	for i, key := range append([][]byte{active}, older...) {
		if len(key) != KeySize {
			return nil, fmt.Errorf("seal: master key %d is %d bytes, want %d", i, len(key), KeySize)
		}
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		k.keys[IDOf(key)] = &sealer{aead: aead}
	}
	k.active = IDOf(active)
	return k, nil
}

// ActiveID returns the id of the key new values are sealed under.
func (k *Keyring) ActiveID() KeyID { return k.active }

// Seal encrypts value and binds it to binding, which must name the row the
// value is stored in.
func (k *Keyring) Seal(value []byte, binding string) ([]byte, error) {
	out := make([]byte, headerSize, Overhead+len(value))
	out[0] = Version
	binary.BigEndian.PutUint32(out[1:5], uint32(k.active))
	if _, err := rand.Read(out[5:headerSize]); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	ad := associatedData(out[:5], binding)
	return k.keys[k.active].aead.Seal(out, out[5:headerSize], value, ad), nil
}

// Open decrypts a value sealed with binding. The error wraps ErrUnknownKey
// or ErrCorrupt.
func (k *Keyring) Open(sealed []byte, binding string) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte minimum", ErrCorrupt, len(sealed), Overhead)
	}
	if sealed[0] != Version {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, sealed[0])
	}
	id := KeyID(binary.BigEndian.Uint32(sealed[1:5]))
	s, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: key id %s", ErrUnknownKey, id)
	}
	plain, err := s.aead.Open(nil, sealed[5:headerSize], sealed[headerSize:], associatedData(sealed[:5], binding))
	if err != nil {
		return nil, fmt.Errorf("%w (binding %q)", ErrCorrupt, binding)
	}
	return plain, nil
}

// KeyIDOf returns the id of the master key a value was sealed under, so
// values still under an old key can be found and re-sealed.
func KeyIDOf(sealed []byte) (KeyID, error) {
	if len(sealed) < Overhead || sealed[0] != Version {
		return 0, ErrCorrupt
	}
	return KeyID(binary.BigEndian.Uint32(sealed[1:5])), nil
}

func associatedData(header []byte, binding string) []byte {
	ad := make([]byte, 0, len(header)+len(binding))
	return append(append(ad, header...), binding...)
}
