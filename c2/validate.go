package c2

import (
	"fmt"
	"unicode"
	"unicode/utf8"

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

// checkSymmetricKey and checkPublicKey apply e4's checks (e4.CheckSymKey,
// e4.CheckPublicKey), so that C2 accepts exactly the keys devices accept.
func checkSymmetricKey(key []byte) error {
	if err := e4.CheckSymKey(key); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return nil
}

func checkPublicKey(pub []byte) error {
	if err := e4.CheckPublicKey(pub); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
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
