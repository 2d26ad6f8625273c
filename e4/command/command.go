// Package command is the byte layout of the eight E4 v1 commands, which C2
// sends to a device on its control topic: the codes, the builders C2 uses,
// and the check a device runs on a decrypted command before applying it.
//
// A command is its code byte followed by fixed-length arguments:
//
//	RemoveTopic   0x00 | topic hash (16)
//	ResetTopics   0x01
//	SetIDKey      0x02 | key (32, SK) or Ed25519 seed || public key (64, PK)
//	SetTopicKey   0x03 | topic key (32) | topic hash (16)
//	RemovePubKey  0x04 | client id (16)
//	ResetPubKeys  0x05
//	SetPubKey     0x06 | Ed25519 public key (32) | client id (16)
//	SetC2Key      0x07 | C2 X25519 public key (32)
//
// The last four exist in public-key mode only. Topic hashes come from the
// deployment's suite (e4.Suite.HashTopic, e4.HashTopic for V1), which is why
// the builders take the hash and not the topic name. A built command is
// protected for one client with e4.Suite.ProtectCommand under its command
// key; the device decrypts and applies it in e4.Client.HandleCommand.
//
// The package imports nothing of package e4, which imports it: e4.TopicHash
// and e4.ID are passed as they are (both are [16]byte). Errors wrap
// e4.ErrInvalidKey or e4.ErrInvalidCommand.
package command

import (
	"crypto/ed25519"
	"fmt"

	"github.com/e4-iot/e4kit/e4/internal/check"
)

// Code is the first byte of a command: which of the eight it is.
type Code byte

// The eight commands of E4 v1.
const (
	RemoveTopic  Code = 0x00 // topic hash (16)
	ResetTopics  Code = 0x01 // no argument
	SetIDKey     Code = 0x02 // key: 32 bytes (SK) or Ed25519 seed||public (64, PK)
	SetTopicKey  Code = 0x03 // topic key (32) || topic hash (16)
	RemovePubKey Code = 0x04 // client id (16); PK only
	ResetPubKeys Code = 0x05 // no argument; PK only
	SetPubKey    Code = 0x06 // Ed25519 public key (32) || client id (16); PK only
	SetC2Key     Code = 0x07 // C2 X25519 public key (32); PK only
)

const (
	keyLen  = check.KeyLen // symmetric keys and the C2 X25519 public key
	hashLen = 16           // topic hashes and client ids
)

var names = [...]string{"RemoveTopic", "ResetTopics", "SetIDKey", "SetTopicKey", "RemovePubKey", "ResetPubKeys", "SetPubKey", "SetC2Key"}

// String returns the command's name as in the E4 documentation.
func (c Code) String() string {
	if c.Known() {
		return names[c]
	}
	return fmt.Sprintf("Code(%#02x)", byte(c))
}

// Known reports whether c is one of the eight commands of E4 v1.
func (c Code) Known() bool { return int(c) < len(names) }

// PubKeyOnly reports whether the command exists in public-key mode only.
func (c Code) PubKeyOnly() bool { return c >= RemovePubKey && c <= SetC2Key }

// length is the exact length of each command, code byte included; SetIDKey
// has a second valid length in PK mode (see Check).
var length = [...]int{
	RemoveTopic:  1 + hashLen,
	ResetTopics:  1,
	SetIDKey:     1 + keyLen,
	SetTopicKey:  1 + keyLen + hashLen,
	RemovePubKey: 1 + hashLen,
	ResetPubKeys: 1,
	SetPubKey:    1 + ed25519.PublicKeySize + hashLen,
	SetC2Key:     1 + keyLen,
}

// Check returns the code of a decrypted command and whether the command is
// well formed: not empty, a known code, the exact length of that code. For
// a known code with a wrong length it returns the code with the error, so
// that a device can refuse a public-key-only command by its mode first.
// It does not check the key material in the arguments.
func Check(cmd []byte) (Code, error) {
	if len(cmd) == 0 {
		return 0, fmt.Errorf("%w: empty command", check.ErrInvalidCommand)
	}
	c := Code(cmd[0])
	if !c.Known() {
		return c, fmt.Errorf("%w: unknown command code %#02x", check.ErrInvalidCommand, cmd[0])
	}
	if len(cmd) != length[c] && !(c == SetIDKey && len(cmd) == 1+ed25519.PrivateKeySize) {
		return c, fmt.Errorf("%w: %v must be %d bytes, got %d", check.ErrInvalidCommand, c, length[c], len(cmd))
	}
	return c, nil
}

// NewRemoveTopic builds the command that makes a client forget the key of
// the topic with this hash.
func NewRemoveTopic(topicHash [16]byte) []byte {
	return append([]byte{byte(RemoveTopic)}, topicHash[:]...)
}

// NewResetTopics builds the command that makes a client forget all topic
// keys.
func NewResetTopics() []byte { return []byte{byte(ResetTopics)} }

// NewSetIDKey builds the command that replaces a client's own key: a
// 32-byte symmetric key for an SK client, a 64-byte Ed25519 private key for
// a PK one.
func NewSetIDKey(key []byte) ([]byte, error) {
	switch len(key) {
	case keyLen:
		if err := check.SymKey(key); err != nil {
			return nil, err
		}
	case ed25519.PrivateKeySize:
	default:
		return nil, fmt.Errorf("%w: id key must be %d or %d bytes, got %d", check.ErrInvalidKey, keyLen, ed25519.PrivateKeySize, len(key))
	}
	return append([]byte{byte(SetIDKey)}, key...), nil
}

// NewSetTopicKey builds the command that gives a client the 32-byte key of
// the topic with this hash.
func NewSetTopicKey(key []byte, topicHash [16]byte) ([]byte, error) {
	if err := check.SymKey(key); err != nil {
		return nil, err
	}
	cmd := append([]byte{byte(SetTopicKey)}, key...)
	return append(cmd, topicHash[:]...), nil
}

// NewRemovePubKey builds the command that makes a PK client forget the
// sender with this id.
func NewRemovePubKey(id [16]byte) []byte { return append([]byte{byte(RemovePubKey)}, id[:]...) }

// NewResetPubKeys builds the command that makes a PK client forget all
// senders.
func NewResetPubKeys() []byte { return []byte{byte(ResetPubKeys)} }

// NewSetPubKey builds the command that tells a PK client the Ed25519 public
// key of the sender with this id. Note the order on the wire: key first,
// then id.
func NewSetPubKey(pub ed25519.PublicKey, id [16]byte) ([]byte, error) {
	if _, err := check.PublicKey(pub); err != nil {
		return nil, err
	}
	cmd := append([]byte{byte(SetPubKey)}, pub...)
	return append(cmd, id[:]...), nil
}

// NewSetC2Key builds the command that gives a PK client a new C2 X25519
// public key (and so a new command key).
func NewSetC2Key(c2Public []byte) ([]byte, error) {
	if len(c2Public) != keyLen {
		return nil, fmt.Errorf("%w: C2 public key must be %d bytes", check.ErrInvalidKey, keyLen)
	}
	return append([]byte{byte(SetC2Key)}, c2Public...), nil
}
