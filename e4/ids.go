package e4

import (
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Sizes and limits of the E4 v1 wire format.
const (
	IDLen              = 16                                           // client id
	TopicHashLen       = 16                                           // truncated SHA3-256 of a topic name
	KeyLen             = 32                                           // symmetric topic and client keys
	TimestampLen       = 8                                            // little-endian Unix seconds
	TagLen             = 16                                           // the AES-SIV synthetic IV
	SignatureLen       = 64                                           // Ed25519 signature
	SKOverhead         = TimestampLen + TagLen                        // 24
	PKOverhead         = TimestampLen + IDLen + TagLen + SignatureLen // 104
	MinPasswordLen     = 16                                           // bytes of UTF-8, not characters
	MaxTopicLen        = 512
	ControlTopicPrefix = "e4/"
)

// Time windows of E4 v1; a Config may change each of them.
const (
	DefaultMaxAge        = 10 * time.Minute // oldest acceptable message
	DefaultKeyTransition = 60 * time.Minute // how long a replaced topic key still decrypts
)

// ID identifies a client (16 bytes).
type ID [IDLen]byte

// String returns the id as lower-case hex, the form used in control topics.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID decodes a 32-character hex client id.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != IDLen {
		return id, fmt.Errorf("e4: client id must be %d hex characters", 2*IDLen)
	}
	copy(id[:], b)
	return id, nil
}

// TopicHash is the 16-byte digest that stands for a topic name in commands and
// in the key table.
type TopicHash [TopicHashLen]byte

// String returns the hash as lower-case hex.
func (h TopicHash) String() string { return hex.EncodeToString(h[:]) }

// HashTopic returns the first 16 bytes of SHA3-256(topic).
// It is V1.HashTopic; see Suite for the others.
func HashTopic(topic string) TopicHash {
	return V1.HashTopic(topic)
}

// IDFromName derives a client id from a human-readable name ("alias"): the
// first 16 bytes of SHA3-256(name). E4 v1 uses the same function as for
// topics, with no domain separation; that is kept for compatibility.
// It is V1.IDFromName; see Suite for the others.
func IDFromName(name string) ID {
	return V1.IDFromName(name)
}

// ControlTopic returns the topic on which C2 sends commands to the client
// with this id: "e4/" followed by the id in lower-case hex.
func ControlTopic(id ID) string { return ControlTopicPrefix + id.String() }

// Argon2i parameters of E4 v1 password derivation. The empty salt is a
// weakness kept for interoperability with deployed devices.
const (
	argon2Time    = 1
	argon2Memory  = 64 * 1024 // KiB
	argon2Threads = 4
)

// KeyFromPassword derives a 32-byte symmetric key from a password exactly as
// E4 v1 does: Argon2i v1.3, empty salt, time 1, 64 MiB, 4 threads. The
// password must be valid UTF-8 and at least 16 bytes long.
func KeyFromPassword(password string) ([]byte, error) {
	if !utf8.ValidString(password) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrInvalidPassword)
	}
	if len(password) < MinPasswordLen {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrInvalidPassword, len(password), MinPasswordLen)
	}
	return argon2.Key([]byte(password), nil, argon2Time, argon2Memory, argon2Threads, KeyLen), nil
}
