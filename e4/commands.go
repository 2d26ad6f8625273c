package e4

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// Command is the first byte of a C2 command.
type Command byte

// The eight commands of E4 v1.
const (
	RemoveTopic  Command = 0x00 // topic hash (16)
	ResetTopics  Command = 0x01 // no argument
	SetIDKey     Command = 0x02 // key: 32 bytes (SK) or Ed25519 seed||public (64, PK)
	SetTopicKey  Command = 0x03 // topic key (32) || topic hash (16)
	RemovePubKey Command = 0x04 // client id (16); PK only
	ResetPubKeys Command = 0x05 // no argument; PK only
	SetPubKey    Command = 0x06 // Ed25519 public key (32) || client id (16); PK only
	SetC2Key     Command = 0x07 // C2 X25519 public key (32); PK only
)

var commandNames = [...]string{"RemoveTopic", "ResetTopics", "SetIDKey", "SetTopicKey", "RemovePubKey", "ResetPubKeys", "SetPubKey", "SetC2Key"}

// String returns the command's name as in the E4 documentation.
func (cmd Command) String() string {
	if int(cmd) < len(commandNames) {
		return commandNames[cmd]
	}
	return fmt.Sprintf("Command(%#02x)", byte(cmd))
}

// pubKeyOnly reports whether the command only makes sense in PK mode.
func (cmd Command) pubKeyOnly() bool { return cmd >= RemovePubKey && cmd <= SetC2Key }

// commandLen is the exact length of each command (code byte included);
// SetIDKey has two valid lengths, handled where it is parsed.
var commandLen = [...]int{
	RemoveTopic:  1 + TopicHashLen,
	ResetTopics:  1,
	SetIDKey:     1 + KeyLen,
	SetTopicKey:  1 + KeyLen + TopicHashLen,
	RemovePubKey: 1 + IDLen,
	ResetPubKeys: 1,
	SetPubKey:    1 + ed25519.PublicKeySize + IDLen,
	SetC2Key:     1 + KeyLen,
}

// CmdRemoveTopic builds the command that makes a client forget a topic key.
func CmdRemoveTopic(topic string) []byte {
	h := HashTopic(topic)
	return append([]byte{byte(RemoveTopic)}, h[:]...)
}

// CmdResetTopics builds the command that makes a client forget all topic keys.
func CmdResetTopics() []byte { return []byte{byte(ResetTopics)} }

// CmdSetIDKey builds the command that replaces a client's own key: a 32-byte
// symmetric key for an SK client, a 64-byte Ed25519 private key for a PK one.
func CmdSetIDKey(key []byte) ([]byte, error) {
	switch len(key) {
	case KeyLen:
		if err := checkSymKey(key); err != nil {
			return nil, err
		}
	case ed25519.PrivateKeySize:
	default:
		return nil, fmt.Errorf("%w: id key must be %d or %d bytes, got %d", ErrInvalidKey, KeyLen, ed25519.PrivateKeySize, len(key))
	}
	return append([]byte{byte(SetIDKey)}, key...), nil
}

// CmdSetTopicKey builds the command that gives a client the key of a topic.
func CmdSetTopicKey(key []byte, topic string) ([]byte, error) {
	if err := checkSymKey(key); err != nil {
		return nil, err
	}
	h := HashTopic(topic)
	cmd := append([]byte{byte(SetTopicKey)}, key...)
	return append(cmd, h[:]...), nil
}

// CmdRemovePubKey builds the command that makes a PK client forget a sender.
func CmdRemovePubKey(id ID) []byte { return append([]byte{byte(RemovePubKey)}, id[:]...) }

// CmdResetPubKeys builds the command that makes a PK client forget all senders.
func CmdResetPubKeys() []byte { return []byte{byte(ResetPubKeys)} }

// CmdSetPubKey builds the command that tells a PK client the Ed25519 public
// key of a sender. Note the order on the wire: key first, then id.
func CmdSetPubKey(pub ed25519.PublicKey, id ID) ([]byte, error) {
	if _, err := newVerifier(pub); err != nil {
		return nil, err
	}
	cmd := append([]byte{byte(SetPubKey)}, pub...)
	return append(cmd, id[:]...), nil
}

// CmdSetC2Key builds the command that gives a PK client a new C2 X25519
// public key (and so a new command key).
func CmdSetC2Key(c2Public []byte) ([]byte, error) {
	if len(c2Public) != KeyLen {
		return nil, fmt.Errorf("%w: C2 public key must be %d bytes", ErrInvalidKey, KeyLen)
	}
	return append([]byte{byte(SetC2Key)}, c2Public...), nil
}

// ProtectCommand protects a command for one client under its command key
// (the client key in SK mode, see C2CommandKey in PK mode), at time now, for
// publication on the client's control topic.
func ProtectCommand(cmd, commandKey []byte, now time.Time) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalidCommand)
	}
	return ProtectSymKey(nil, cmd, commandKey, now)
}

// HandleCommand authenticates a protected command from C2 and applies it. It
// returns the command's code. With a Store, the new state is saved before
// HandleCommand returns; if saving fails the change stays in memory and the
// error wraps ErrStore.
func (c *Client) HandleCommand(protected []byte) (Command, error) {
	if len(protected) < SKOverhead {
		return 0, ErrInvalidLength
	}
	now := c.now()
	ts := readTimestamp(protected)
	oldest, err := c.cfg.checkTimestamp(ts, now)
	if err != nil {
		return 0, err
	}
	var buf [1 + 2*KeyLen]byte // the longest command, SetIDKey in PK mode
	c.mu.RLock()
	cipher := c.commandCipher
	c.mu.RUnlock()
	cmd, err := cipher.Open(buf[:0], protected[TimestampLen:], protected[:TimestampLen])
	if err != nil {
		return 0, ErrAuthentication
	}
	defer clear(cmd)
	if len(cmd) == 0 {
		return 0, fmt.Errorf("%w: empty command", ErrInvalidCommand)
	}
	// Replays are refused before anything changes; a command that fails to
	// apply still counts as seen, as retrying it would fail the same way.
	h := HashTopic(c.controlTopic)
	var noSender ID
	if c.replay != nil && !c.replay.accept(fingerprint(&h, &noSender, protected[TimestampLen:SKOverhead]), ts, oldest) {
		return Command(cmd[0]), ErrReplay
	}
	if err := c.apply(cmd, ts, now); err != nil {
		return Command(cmd[0]), err
	}
	return Command(cmd[0]), c.persist()
}

// apply validates and applies one decrypted command under the write lock.
func (c *Client) apply(cmd []byte, ts uint64, now time.Time) error {
	code := Command(cmd[0])
	if int(code) >= len(commandLen) {
		return fmt.Errorf("%w: unknown command code %#02x", ErrInvalidCommand, cmd[0])
	}
	if code.pubKeyOnly() && c.mode != PubKey {
		return fmt.Errorf("%w: %v", ErrUnsupportedOperation, code)
	}
	if len(cmd) != commandLen[code] && !(code == SetIDKey && len(cmd) == 1+ed25519.PrivateKeySize) {
		return fmt.Errorf("%w: %v must be %d bytes, got %d", ErrInvalidCommand, code, commandLen[code], len(cmd))
	}
	args := cmd[1:]
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changed()
	switch code {
	case RemoveTopic:
		return c.removeTopic(TopicHash(args), ts)
	case ResetTopics:
		c.resetTopics(ts)
	case SetIDKey:
		return c.setIDKey(args)
	case SetTopicKey:
		return c.setTopicKey(args[:KeyLen], TopicHash(args[KeyLen:]), ts, now)
	case RemovePubKey:
		return c.removePubKey(ID(args))
	case ResetPubKeys:
		clear(c.signers)
	case SetPubKey:
		return c.setPubKey(args[:ed25519.PublicKeySize], ID(args[ed25519.PublicKeySize:]))
	case SetC2Key:
		return c.setC2Key(args)
	}
	return nil
}

func (c *Client) setIDKey(key []byte) error {
	if c.mode == SymKey {
		return c.setSymKey(key)
	}
	return c.setSignKey(key)
}

// setTopicKey installs a topic key. A key different from the current one
// keeps the current one as the previous key for the transition window; the
// same key again changes nothing. A command older than the last change of
// this topic (or the last ResetTopics) is refused.
func (c *Client) setTopicKey(key []byte, h TopicHash, ts uint64, now time.Time) error {
	if err := checkSymKey(key); err != nil {
		return err
	}
	t := c.topics[h]
	if ts < c.topicsResetAt || (t != nil && ts < t.changedAt) {
		return fmt.Errorf("%w: SetTopicKey for %v", ErrStaleCommand, h)
	}
	if t == nil {
		t = &topicKeys{hash: h}
		c.topics[h] = t
	}
	t.changedAt = ts
	if t.current != nil && [KeyLen]byte(key) == t.key {
		return nil
	}
	cipher, err := newTopicCipher(key)
	if err != nil {
		return err
	}
	if t.current != nil {
		t.previous, t.prevKey, t.hasPrevKey = t.current, t.key, true
		t.prevUntil = now.Add(c.cfg.keyTransition())
	}
	t.current, t.key = cipher, [KeyLen]byte(key)
	return nil
}

// removeTopic forgets a topic key and its previous key, leaving a tombstone
// with the command's timestamp so that a delayed, older SetTopicKey cannot
// bring the key back.
func (c *Client) removeTopic(h TopicHash, ts uint64) error {
	t := c.topics[h]
	if t == nil {
		c.topics[h] = &topicKeys{hash: h, changedAt: ts}
		return nil
	}
	*t = topicKeys{hash: h, changedAt: max(ts, t.changedAt)}
	return nil
}

func (c *Client) resetTopics(ts uint64) {
	clear(c.topics)
	clear(c.names)
	c.topicsResetAt = max(c.topicsResetAt, ts)
}

func (c *Client) removePubKey(id ID) error {
	if _, ok := c.signers[id]; !ok {
		return fmt.Errorf("%w: %v", ErrPubKeyNotFound, id)
	}
	delete(c.signers, id)
	return nil
}

func (c *Client) setPubKey(pub []byte, id ID) error {
	v, err := newVerifier(pub)
	if err != nil {
		return err
	}
	c.signers[id] = v
	return nil
}

// SetTopicKey installs a topic key locally, as the SetTopicKey command would
// at the current time; for provisioning without C2.
func (c *Client) SetTopicKey(key []byte, topic string) error {
	now := c.now()
	c.mu.Lock()
	c.changed()
	err := c.setTopicKey(key, HashTopic(topic), uint64(max(now.Unix(), 0)), now)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.persist()
}

// SetPubKey records the Ed25519 public key of a sender locally (PK mode).
func (c *Client) SetPubKey(id ID, pub ed25519.PublicKey) error {
	if c.mode != PubKey {
		return ErrUnsupportedOperation
	}
	c.mu.Lock()
	c.changed()
	err := c.setPubKey(pub, id)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.persist()
}
