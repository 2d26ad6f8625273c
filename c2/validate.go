package c2

import (
	"crypto/ed25519"
	"fmt"
	"unicode"
	"unicode/utf8"

	"filippo.io/edwards25519"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// Limits on names and pages.
const (
	MaxNameLen   = 256
	DefaultLimit = 100
	MaxLimit     = 10000
)

func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s name is empty", ErrInvalidArgument, what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s name is %d bytes, the limit is %d", ErrInvalidArgument, what, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s name is not valid UTF-8", ErrInvalidArgument, what)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s name contains a control character", ErrInvalidArgument, what)
		}
	}
	return nil
}

func checkTopic(topic string) error {
	if err := checkName("topic", topic); err != nil {
		return err
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return fmt.Errorf("%w: topic %q has a wildcard (+ or #); keys belong to concrete topics", ErrInvalidArgument, topic)
	}
	return nil
}

func checkSymmetricKey(key []byte) error {
	if len(key) != e4.KeyLen {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidArgument, len(key), e4.KeyLen)
	}
	return nil
}

func checkPublicKey(pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidArgument, len(pub), ed25519.PublicKeySize)
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return fmt.Errorf("%w: public key is not a valid Ed25519 point", ErrInvalidArgument)
	}
	// A point of small order signs nothing securely (and all zeros is one).
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return fmt.Errorf("%w: public key is a point of small order", ErrInvalidArgument)
	}
	return nil
}

// checkLimit applies the default page size and refuses oversized pages.
func checkLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 0 || limit > MaxLimit:
		return 0, fmt.Errorf("%w: page size %d is outside 1..%d", ErrInvalidArgument, limit, MaxLimit)
	}
	return limit, nil
}
