package e4

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
)

// ProtectCommand protects a command for one client under its command key
// (the client key in SK mode, see C2CommandKey in PK mode), at time now, for
// publication on the client's control topic.
func ProtectCommand(cmd, commandKey []byte, now time.Time) ([]byte, error) {
	return V1.ProtectCommand(cmd, commandKey, now)
}

// HandleCommand authenticates a protected command from C2 and applies it. It
// returns the command's code. With a Store, the new state is saved before
// HandleCommand returns; if saving fails the change stays in memory and the
// error wraps ErrStore.
func (c *Client) HandleCommand(protected []byte) (command.Code, error) {
	if len(protected) < SKOverhead {
		return 0, ErrInvalidLength
	}
	now := c.now()
	ts := readTimestamp(protected)
	if _, err := c.cfg.checkTimestampSkew(ts, now, c.cfg.commandFutureSkew()); err != nil {
		return 0, err
	}
	var buf [1 + 2*KeyLen]byte // the longest command, SetIDKey in PK mode
	c.mu.RLock()
	cipher := c.commandCipher
	c.mu.RUnlock()
	cmd, err := cipher.Open(buf[:0], protected[TimestampLen:], protected[:TimestampLen])
	if err != nil {
		return 0, c.commandAuthError(protected)
	}
	defer clear(cmd)
	if len(cmd) == 0 {
		return 0, fmt.Errorf("%w: empty command", ErrInvalidCommand)
	}
	// Replays need no cache here: the marks of command ordering (order.go)
	// refuse every command not newer than the last one applied to its item,
	// across restarts, and report an exact repeat of that one as ErrReplay.
	// A refused command sent again is refused again (and acknowledged so),
	// never mistaken for one applied.
	if err := c.apply(cmd, mark{at: ts, digest: CommandDigest(protected)}, now); err != nil {
		return command.Code(cmd[0]), err
	}
	return command.Code(cmd[0]), c.persist()
}

// apply validates and applies one decrypted command, ordered by order (its
// timestamp and digest), under the write lock.
func (c *Client) apply(cmd []byte, order mark, now time.Time) error {
	code, err := command.Check(cmd)
	// A public-key-only command sent to an SK client is refused for the
	// mode (ErrUnsupportedOperation) whatever its length.
	if code.PubKeyOnly() && c.mode != PubKey {
		return fmt.Errorf("%w: %v", ErrUnsupportedOperation, code)
	}
	if err != nil {
		return err
	}
	args := cmd[1:]
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changed()
	switch code {
	case command.RemoveTopic:
		return c.removeTopic(TopicHash(args), order, now)
	case command.ResetTopics:
		return c.resetTopicKeys(order, now)
	case command.SetIDKey:
		return c.setIDKey(args, order)
	case command.SetTopicKey:
		return c.setTopicKey(args[:KeyLen], TopicHash(args[KeyLen:]), order, now)
	case command.RemovePubKey:
		return c.removePubKey(ID(args), order, now)
	case command.ResetPubKeys:
		return c.resetSigners(order, now)
	case command.SetPubKey:
		return c.orderedSetPubKey(args[:ed25519.PublicKeySize], ID(args[ed25519.PublicKeySize:]), order)
	case command.SetC2Key:
		return c.setC2KeyOrdered(args, order)
	}
	return nil
}

func (c *Client) setIDKey(key []byte, order mark) error {
	if err := checkOrder(command.SetIDKey, order, c.idKeyOrder, 0); err != nil {
		return err
	}
	var err error
	if c.mode == SymKey {
		err = c.setSymKey(key)
	} else {
		err = c.setSignKey(key)
	}
	if err == nil {
		c.idKeyOrder.advance(order)
	}
	return err
}

func (c *Client) setC2KeyOrdered(key []byte, order mark) error {
	if err := checkOrder(command.SetC2Key, order, c.c2KeyOrder, 0); err != nil {
		return err
	}
	if err := c.setC2Key(key); err != nil {
		return err
	}
	c.c2KeyOrder.advance(order)
	return nil
}

// topicOrder returns the mark of a topic (zero if it has no entry).
func (c *Client) topicOrder(h TopicHash) mark {
	if t := c.topics[h]; t != nil {
		return t.order
	}
	return mark{}
}

// setTopicKey installs a topic key. A key different from the current one
// keeps the current one as the previous key for the transition window; the
// same key again changes nothing. A command not newer than the last change
// of this topic or the last ResetTopics is refused (see checkOrder).
func (c *Client) setTopicKey(key []byte, h TopicHash, order mark, now time.Time) error {
	if err := checkSymKey(key); err != nil {
		return err
	}
	if err := checkOrder(command.SetTopicKey, order, c.topicOrder(h), c.resetTopics.at); err != nil {
		return err
	}
	t := c.topics[h]
	if t == nil {
		t = &topicKeys{hash: h}
		c.topics[h] = t
	}
	t.order.advance(order)
	if t.current != nil && [KeyLen]byte(key) == t.key {
		return nil
	}
	cipher, err := c.suite.newTopicCipher(key)
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
// with the command's mark so that an older SetTopicKey cannot bring the key
// back; a later SetTopicKey installs its key with no previous key.
func (c *Client) removeTopic(h TopicHash, order mark, now time.Time) error {
	if err := checkOrder(command.RemoveTopic, order, c.topicOrder(h), c.resetTopics.at); err != nil {
		return err
	}
	t := c.topics[h]
	if t == nil {
		t = &topicKeys{hash: h}
		c.topics[h] = t
	}
	*t = topicKeys{hash: h, order: t.order}
	t.order.advance(order)
	c.pruneTombstones(now)
	return nil
}

// resetTopicKeys forgets every topic changed at or before the reset; a topic
// changed by a newer command keeps its key.
func (c *Client) resetTopicKeys(order mark, now time.Time) error {
	if err := checkOrder(command.ResetTopics, order, c.resetTopics, 0); err != nil {
		return err
	}
	for h, t := range c.topics {
		if t.order.at <= order.at {
			delete(c.topics, h)
		}
	}
	clear(c.names)
	c.resetTopics.advance(order)
	c.pruneTombstones(now)
	return nil
}

// removePubKey forgets a sender, leaving a tombstone mark so that an older
// SetPubKey cannot make it trusted again. Removing an unknown sender is not
// an error: the tombstone still orders what follows.
func (c *Client) removePubKey(id ID, order mark, now time.Time) error {
	if err := checkOrder(command.RemovePubKey, order, c.signerOrder[id], c.resetPubKeys.at); err != nil {
		return err
	}
	m := c.signerOrder[id]
	m.advance(order)
	c.signerOrder[id] = m
	delete(c.signers, id)
	c.pruneTombstones(now)
	return nil
}

// resetSigners forgets every sender changed at or before the reset.
func (c *Client) resetSigners(order mark, now time.Time) error {
	if err := checkOrder(command.ResetPubKeys, order, c.resetPubKeys, 0); err != nil {
		return err
	}
	for id := range c.signers {
		if c.signerOrder[id].at <= order.at {
			delete(c.signers, id)
		}
	}
	for id, m := range c.signerOrder {
		if m.at <= order.at {
			delete(c.signerOrder, id)
		}
	}
	c.resetPubKeys.advance(order)
	c.pruneTombstones(now)
	return nil
}

// orderedSetPubKey records a sender's key if the command is newer than the
// last change of that sender and the last ResetPubKeys.
func (c *Client) orderedSetPubKey(pub []byte, id ID, order mark) error {
	if err := checkOrder(command.SetPubKey, order, c.signerOrder[id], c.resetPubKeys.at); err != nil {
		return err
	}
	if err := c.setPubKey(pub, id); err != nil {
		return err
	}
	m := c.signerOrder[id]
	m.advance(order)
	c.signerOrder[id] = m
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
// at the current time; for provisioning without C2. It is refused with
// ErrStaleCommand if a command dated later changed the topic.
func (c *Client) SetTopicKey(key []byte, topic string) error {
	now := c.now()
	c.mu.Lock()
	c.changed()
	err := c.setTopicKey(key, c.suite.HashTopic(topic), localOrder(now), now)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.persist()
}

// SetPubKey records the Ed25519 public key of a sender locally (PK mode).
// It is refused with ErrStaleCommand if a command dated later changed the
// sender.
func (c *Client) SetPubKey(id ID, pub ed25519.PublicKey) error {
	if c.mode != PubKey {
		return ErrUnsupportedOperation
	}
	now := c.now()
	c.mu.Lock()
	c.changed()
	err := c.orderedSetPubKey(pub, id, localOrder(now))
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.persist()
}
