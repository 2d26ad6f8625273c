// Package store persists an E4 client's serialized state.
//
// The client encodes its whole state (which includes secret keys) to bytes
// and hands them to a Store; this package never interprets those bytes. It
// only guarantees that Load returns exactly what some completed Save stored,
// or a descriptive error, and it never logs or prints the state.
package store

import "errors"

// Store persists one opaque, versioned state blob. Implementations are safe
// for concurrent use.
type Store interface {
	// Load returns the last saved state, or an error wrapping ErrNotFound if
	// nothing was saved yet.
	Load() ([]byte, error)
	// Save replaces the stored state atomically: after a crash at any
	// instant, Load returns either the old or the new state, complete.
	Save(state []byte) error
}

var (
	// ErrNotFound reports that no state has been saved yet. A client
	// typically treats it as "first start" rather than as a failure.
	ErrNotFound = errors.New("store: no saved state")
	// ErrCorrupt reports a state file that cannot be trusted: bad magic,
	// bad length or checksum mismatch. Errors wrapping it name the file and
	// the problem found.
	ErrCorrupt = errors.New("store: state file is corrupt")
	// ErrNewerVersion reports a state file written in a format version this
	// build does not understand. It is kept apart from ErrCorrupt because the
	// file is probably fine and must not be overwritten by a downgrade.
	ErrNewerVersion = errors.New("store: state file was written by a newer version")
)

// Compile-time checks that both backends satisfy Store.
var (
	_ Store = (*File)(nil)
	_ Store = (*Memory)(nil)
)
