package c2

import (
	"errors"

	"github.com/e4-iot/e4kit/c2/store"
)

// Errors of the service layer. Errors returned by Service methods wrap one
// of these (or a store or e4 error) so API layers can map them to status
// codes.
var (
	// ErrInvalidArgument reports bad input: an empty or wildcard topic, a
	// key of the wrong length, a malformed id, an unknown mode.
	ErrInvalidArgument = errors.New("c2: invalid argument")
	// ErrNotFound reports an unknown client, topic or command.
	ErrNotFound = store.ErrNotFound
	// ErrExists reports a client, topic or membership that already exists.
	ErrExists = store.ErrExists
	// ErrWrongMode reports an operation that exists only in the other mode
	// (for example SetPubKey in a symmetric-key deployment).
	ErrWrongMode = errors.New("c2: operation not available in this crypto mode")
	// ErrNotEnabled reports an operation the deployment's configuration
	// leaves off (for example C2-generated device key pairs).
	ErrNotEnabled = errors.New("c2: not enabled in this deployment")
	// ErrUnavailable reports that the database or the transport does not
	// answer.
	ErrUnavailable = errors.New("c2: unavailable")
)
