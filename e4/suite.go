package e4

import (
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/e4/internal/keccak"
	"github.com/e4-iot/e4kit/e4/siv"
)

// A Suite is the set of symmetric primitives a deployment runs, around the
// unchanged E4 v1 message and command layouts: the AES-SIV cipher of topic
// keys and command keys, and the hash behind topic hashes, ids from names
// and the PK command key. It is a deployment-wide setting of C2
// (c2.Config.Suite) and of every device (Config.Suite): nothing in a message
// says which suite protected it, so a device never guesses, and a message
// from another suite fails authentication (see Config.DiagnoseSuite).
//
// The suites are the package variables V1 and Fast; SuiteByName finds one
// by name. A nil *Suite is V1, so every method works on a nil receiver and
// the zero Config runs E4 v1. Further suites (a FIPS mode, a post-quantum
// variant) plug in as new values of this type; the client, the command
// path and C2 take the suite as a parameter and have no per-suite code.
type Suite struct {
	name         string
	fipsApproved bool
	aesRounds    int                               // AES-256 rounds in S2V and CTR
	sum256       func([]byte) [keccak.Size256]byte // the suite's SHA3-256
	authErr      error                             // ErrAuthentication naming the suite
}

// V1 is E4 v1: AES-256-SIV (14 rounds) and SHA3-256 (24 rounds).
var V1 = newSuite("v1", true, 14, sha3.Sum256)

func init() {
	// V1's clients keep returning the sentinel itself, as they always did
	// (callers compare it with ==); every other suite's error names it.
	V1.authErr = ErrAuthentication
}

// Fast is E4kit's fast mode, after the Too Much Crypto paper: the same
// layouts as V1, with the AES-256 key expansion run for 10 rounds in S2V
// and CTR and SHA3-256 on Keccak-p[1600, 10] (the last 10 of the 24
// rounds). It is not FIPS-approved. PROTOCOL-EXTENSIONS.md defines it.
var Fast = newSuite("fast", false, 10, func(b []byte) [keccak.Size256]byte { return keccak.Sum256(b, 10) })

var suites = []*Suite{V1, Fast}

func newSuite(name string, fips bool, aesRounds int, sum256 func([]byte) [32]byte) *Suite {
	return &Suite{name: name, fipsApproved: fips, aesRounds: aesRounds, sum256: sum256,
		authErr: fmt.Errorf("%w (wrong key, altered, or not protected under suite %q as this side expects)", ErrAuthentication, name)}
}

// ErrUnknownSuite reports a suite name SuiteByName does not know.
var ErrUnknownSuite = errors.New("e4: unknown suite")

// ErrSuiteMismatch reports a message that authenticates under another
// suite than the receiver's: the sender and the receiver were set up in
// different modes. Only Config.DiagnoseSuite returns it, always together
// with ErrAuthentication.
var ErrSuiteMismatch = errors.New("e4: message protected under another suite")

// SuiteByName returns the suite called name ("v1" or "fast"); the empty
// name is V1.
func SuiteByName(name string) (*Suite, error) {
	if name == "" {
		return V1, nil
	}
	for _, s := range suites {
		if s.name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownSuite, name, strings.Join(SuiteNames(), ", "))
}

// SuiteNames lists the names of the known suites, V1 first.
func SuiteNames() []string {
	names := make([]string, len(suites))
	for i, s := range suites {
		names[i] = s.name
	}
	return names
}

// orV1 resolves the nil suite.
func (s *Suite) orV1() *Suite {
	if s == nil {
		return V1
	}
	return s
}

// Name returns the suite's name: "v1" or "fast".
func (s *Suite) Name() string { return s.orV1().name }

// String returns the name.
func (s *Suite) String() string { return s.Name() }

// FIPSApproved reports whether a FIPS mode may run the suite: its block
// cipher and hash are FIPS 197 AES and FIPS 202 SHA3-256 at their standard
// round counts. It is a property of the primitives, not a validation (E4's
// AES-SIV and X25519 are not approved schemes themselves). A FIPS mode, when
// there is one, refuses every suite for which this is false, Fast included.
func (s *Suite) FIPSApproved() bool { return s.orV1().fipsApproved }

// HashTopic returns the first 16 bytes of the suite's SHA3-256 of topic.
func (s *Suite) HashTopic(topic string) TopicHash {
	return TopicHash(s.truncatedHash(topic))
}

// IDFromName returns the first 16 bytes of the suite's SHA3-256 of name.
func (s *Suite) IDFromName(name string) ID {
	return ID(s.truncatedHash(name))
}

func (s *Suite) truncatedHash(str string) [16]byte {
	sum := s.orV1().sum256([]byte(str))
	return [16]byte(sum[:16])
}

// newTopicCipher builds the suite's AES-SIV instance for a 32-byte key:
// AES-256 with the suite's round count for both S2V and CTR (the key
// written twice).
func (s *Suite) newTopicCipher(key []byte) (*siv.Cipher, error) {
	var double [2 * KeyLen]byte
	copy(double[:], key)
	copy(double[KeyLen:], key)
	defer clear(double[:])
	return siv.NewRounds(double[:], s.orV1().aesRounds)
}

// authError is the error of a message that fails authentication:
// ErrAuthentication for V1, and for the other suites ErrAuthentication
// wrapped with the suite's name, so that a device of a non-default suite
// that receives default-mode traffic says which suite it expected. Each is
// one preallocated value, so the failure path allocates nothing.
func (s *Suite) authError() error { return s.orV1().authErr }

// ProtectCommand is the package's ProtectCommand under the suite's cipher.
func (s *Suite) ProtectCommand(cmd, commandKey []byte, now time.Time) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalidCommand)
	}
	return s.ProtectSymKey(nil, cmd, commandKey, now)
}

// ClientCommandKey is the package's ClientCommandKey with the suite's hash.
func (s *Suite) ClientCommandKey(clientPriv ed25519.PrivateKey, c2Public []byte) ([]byte, error) {
	xPriv, err := X25519PrivateFromEd25519(clientPriv)
	if err != nil {
		return nil, err
	}
	return s.commandKeyPK(xPriv, c2Public)
}

// C2CommandKey is the package's C2CommandKey with the suite's hash.
func (s *Suite) C2CommandKey(c2Private, clientPublic []byte) ([]byte, error) {
	xPub, err := X25519PublicFromEd25519(clientPublic)
	if err != nil {
		return nil, err
	}
	return s.commandKeyPK(c2Private, xPub)
}

// OpenAck is the package's OpenAck under the suite's cipher.
func (s *Suite) OpenAck(ack, commandKey []byte, cfg *Config) (digest [AckDigestLen]byte, status AckStatus, err error) {
	plain, err := s.UnprotectSymKey(nil, ack, commandKey, cfg)
	if err != nil {
		return digest, 0, err
	}
	return decodeAck(plain)
}

// ProtectSyncReport is the package's ProtectSyncReport under the suite's
// cipher.
func (s *Suite) ProtectSyncReport(r *SyncReport, commandKey []byte, now time.Time) ([]byte, error) {
	plain, err := r.encode()
	if err != nil {
		return nil, err
	}
	return s.ProtectSymKey(nil, plain, commandKey, now)
}

// OpenSyncRequest is the package's OpenSyncRequest under the suite's cipher.
func (s *Suite) OpenSyncRequest(msg, commandKey []byte, cfg *Config) (*SyncReport, error) {
	plain, err := s.UnprotectSymKey(nil, msg, commandKey, cfg)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	report, err := decodeSyncReport(plain)
	if err != nil {
		return nil, err
	}
	report.Time = time.Unix(int64(binary.LittleEndian.Uint64(msg[:TimestampLen])), 0)
	return report, nil
}
