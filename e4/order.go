package e4

import (
	"fmt"
	"time"
)

// Command ordering. C2 dates the commands it sends to one client strictly
// increasingly, so a command not newer than the last one applied to the same
// item is either a duplicate or a replay of an old one: applied again, an old
// RemoveTopic would delete a key installed since, an old ResetTopics wipe
// them all, an old SetPubKey trust a revoked sender again. The replay cache
// catches repeats only while the process lives; the marks below are saved
// with the state and hold across restarts.
//
// A local change (the SetTopicKey and SetPubKey methods) is ordered as of the
// end of the previous second, so that a command dated in the same second as a
// local change still wins over it, as a local change does over an equal mark.

// DefaultCommandFutureSkew is how far ahead of the device clock a command may
// be dated by default (see Config.CommandFutureSkew).
const DefaultCommandFutureSkew = 2 * time.Minute

// isLocal reports whether the mark comes from a local change.
func (m mark) isLocal() bool { return m.digest == [AckDigestLen]byte{} }

// localOrder is the mark of a local change made at now.
func localOrder(now time.Time) mark { return mark{at: uint64(max(now.Unix()-1, 0))} }

// checkOrder refuses a command (order) that is not newer than the last
// command applied to its item (last) or the reset that covers the item
// (coveredAt). A local change is refused only when strictly older. An exact
// repeat of the last command applied to the item is ErrReplay.
func checkOrder(what fmt.Stringer, order, last mark, coveredAt uint64) error {
	newest := max(last.at, coveredAt)
	if order.at > newest || (order.isLocal() && order.at == newest) {
		return nil
	}
	if !order.isLocal() && order == last {
		return fmt.Errorf("%w: %v already applied", ErrReplay, what)
	}
	return fmt.Errorf("%w: %v dated %d, item last changed at %d", ErrStaleCommand, what, order.at, newest)
}

// advance records order as the last change of an item.
func (m *mark) advance(order mark) {
	if order.at > m.at {
		*m = order
	}
}

// pruneTombstones forgets removed topics and senders whose mark left the
// validity window: a command that old is refused as too old anyway. Without
// a clock (Config.NoClock) nothing bounds the age of a command, so they stay.
// The caller holds the write lock.
func (c *Client) pruneTombstones(now time.Time) {
	if c.cfg.NoClock {
		return
	}
	oldest := uint64(max(now.Add(-c.cfg.maxAge()).Unix(), 0))
	for h, t := range c.topics {
		if t.current == nil && t.order.at < oldest {
			delete(c.topics, h)
		}
	}
	for id, m := range c.signerOrder {
		if _, held := c.signers[id]; !held && m.at < oldest {
			delete(c.signerOrder, id)
		}
	}
}

// commandFutureSkew is how far ahead of now a command may be dated.
func (cfg *Config) commandFutureSkew() time.Duration {
	skew := cfg.CommandFutureSkew
	switch {
	case skew == 0:
		skew = DefaultCommandFutureSkew
	case skew < 0:
		skew = 0
	}
	return max(skew, cfg.MaxFutureSkew)
}
