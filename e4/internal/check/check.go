// Package check holds what package e4 and package e4/command share without
// importing each other: the sentinels for bad key material and bad commands,
// and the checks of symmetric and Ed25519 public keys. Package e4 exports the
// sentinels under the same values (e4.ErrInvalidKey, e4.ErrInvalidCommand),
// so errors.Is works whichever package returned the error.
package check

import (
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
)

// KeyLen is the length of E4 symmetric keys (topic and client keys).
const KeyLen = 32

var (
	// ErrInvalidKey is e4.ErrInvalidKey.
	ErrInvalidKey = errors.New("e4: invalid key")
	// ErrInvalidCommand is e4.ErrInvalidCommand.
	ErrInvalidCommand = errors.New("e4: invalid command")
)

// SymKey refuses keys of the wrong size and the all-zero key.
func SymKey(key []byte) error {
	if len(key) != KeyLen {
		return fmt.Errorf("%w: symmetric key must be %d bytes, got %d", ErrInvalidKey, KeyLen, len(key))
	}
	if subtle.ConstantTimeCompare(key, make([]byte, KeyLen)) == 1 {
		return fmt.Errorf("%w: symmetric key is all zeros", ErrInvalidKey)
	}
	return nil
}

// PublicKey decodes an Ed25519 public key that can be trusted as a sender
// key: 32 bytes, the canonical encoding of a curve point, not a point of
// small order (with one, signatures verify for messages no private key
// signed).
func PublicKey(pub []byte) (*edwards25519.Point, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 public key must be %d bytes, got %d", ErrInvalidKey, ed25519.PublicKeySize, len(pub))
	}
	A, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: Ed25519 public key is not a valid point", ErrInvalidKey)
	}
	// SetBytes accepts non-canonical encodings (y >= p, or x = 0 with the
	// sign bit set); one point, one encoding.
	if subtle.ConstantTimeCompare(A.Bytes(), pub) != 1 {
		return nil, fmt.Errorf("%w: Ed25519 public key is not canonically encoded", ErrInvalidKey)
	}
	if new(edwards25519.Point).MultByCofactor(A).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, fmt.Errorf("%w: Ed25519 public key is a point of small order", ErrInvalidKey)
	}
	return A, nil
}
