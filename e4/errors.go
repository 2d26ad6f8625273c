package e4

import (
	"errors"

	"github.com/e4-iot/e4kit/e4/internal/check"
)

// Sentinel errors. Callers branch on them with errors.Is; the messages of the
// returned errors may carry more detail.
var (
	// ErrAuthentication is the one opaque error for every message or command
	// that fails authentication: a wrong key, a tampered byte, a bad signature.
	// It deliberately says nothing about which check failed.
	ErrAuthentication = errors.New("e4: message authentication failed")

	// ErrInvalidLength reports a protected message shorter than the fixed
	// overhead of its mode (24 bytes in SK mode, 104 in PK mode).
	ErrInvalidLength = errors.New("e4: invalid length of protected message")

	// ErrTimestampTooOld reports a message older than the validity window
	// (10 minutes by default), or one whose timestamp has its top bit set.
	ErrTimestampTooOld = errors.New("e4: timestamp too old")

	// ErrTimestampInFuture reports a message dated later than now plus the
	// allowed clock skew (0 by default, as in E4 v1).
	ErrTimestampInFuture = errors.New("e4: timestamp in the future")

	// ErrReplay reports a message that was already accepted once inside the
	// validity window, or one too old for the replay cache to vouch for; and
	// a command identical to the last one applied to its item.
	ErrReplay = errors.New("e4: message replayed")

	// ErrTopicKeyNotFound reports a topic for which the client holds no key.
	ErrTopicKeyNotFound = errors.New("e4: topic key not found")

	// ErrPubKeyNotFound reports a PK message from a sender whose public key
	// the client does not know.
	ErrPubKeyNotFound = errors.New("e4: signer public key not found")

	// ErrInvalidCommand reports a command with an unknown code, a wrong
	// length, or no content at all.
	ErrInvalidCommand = check.ErrInvalidCommand

	// ErrUnsupportedOperation reports a public-key-only command sent to a
	// symmetric-key client.
	ErrUnsupportedOperation = errors.New("e4: operation not supported in this mode")

	// ErrInvalidKey reports key material that cannot be used: wrong length,
	// all zeros, or not a valid curve point.
	ErrInvalidKey = check.ErrInvalidKey

	// ErrStaleCommand reports a command not newer (by command timestamp)
	// than the last command applied to the same item (topic, sender, or the
	// client's own key, C2 key, topic or sender resets), or than the reset
	// covering it, so that a delayed retry or a replayed command cannot roll
	// the state back, even after a restart.
	ErrStaleCommand = errors.New("e4: command older than the state it would change")

	// ErrInvalidPassword reports a password that is not valid UTF-8 or is
	// shorter than 16 bytes.
	ErrInvalidPassword = errors.New("e4: invalid password")

	// ErrStore reports that the client state could not be saved or loaded.
	ErrStore = errors.New("e4: state store")
)
