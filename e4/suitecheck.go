package e4

import (
	"fmt"
)

// The error of a message that fails authentication names the receiver's
// suite (Suite.authError), which costs nothing. With Config.DiagnoseSuite
// the client also tries the other suites under the same key, and a message
// that opens under one of them is reported as ErrSuiteMismatch naming both.
// The trial plaintext is wiped and never returned: the message stays
// refused, since the deployment did not choose that suite.

// suiteMismatch returns the error for a message that authenticates under
// suite other.
func (c *Client) suiteMismatch(other *Suite) error {
	return fmt.Errorf("%w: %w: it authenticates under suite %q, this client runs suite %q; C2 and every device must run the same suite",
		ErrAuthentication, ErrSuiteMismatch, other.name, c.suite.name)
}

// messageAuthError is the error of a message on the topic with hash h whose
// SIV part (sealed, with associated data ad) did not open.
func (c *Client) messageAuthError(h TopicHash, ad, sealed []byte) error {
	if !c.cfg.DiagnoseSuite {
		return c.suite.authError()
	}
	var keys [][KeyLen]byte
	c.mu.RLock()
	if t := c.topics[h]; t != nil && t.current != nil {
		keys = append(keys, t.key)
		if t.hasPrevKey {
			keys = append(keys, t.prevKey)
		}
	}
	c.mu.RUnlock()
	defer clear(keys)
	for _, other := range suites {
		for _, key := range keys {
			if other != c.suite && opensUnder(other, key[:], ad, sealed) {
				return c.suiteMismatch(other)
			}
		}
	}
	return c.suite.authError()
}

// commandAuthError is the error of a command that did not open under the
// client's command key.
func (c *Client) commandAuthError(protected []byte) error {
	if !c.cfg.DiagnoseSuite {
		return c.suite.authError()
	}
	for _, other := range suites {
		if other == c.suite {
			continue
		}
		key, err := c.commandKeyUnder(other)
		if err != nil {
			continue
		}
		ok := opensUnder(other, key, protected[:TimestampLen], protected[TimestampLen:])
		clear(key)
		if ok {
			return c.suiteMismatch(other)
		}
	}
	return c.suite.authError()
}

// commandKeyUnder returns the command key the client would have under
// suite s: the client key in SK mode, the PK command key with s's hash.
func (c *Client) commandKeyUnder(s *Suite) ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.mode == SymKey {
		return append([]byte(nil), c.symKey[:]...), nil
	}
	return s.ClientCommandKey(c.signKey, c.c2Public)
}

// opensUnder reports whether sealed opens under key with suite s.
func opensUnder(s *Suite, key, ad, sealed []byte) bool {
	cipher, err := s.newTopicCipher(key)
	if err != nil {
		return false
	}
	plain, err := cipher.Open(nil, sealed, ad)
	clear(plain)
	return err == nil
}

// suiteMismatchInStore is the error of a saved state of suite saved opened
// by a client of suite want.
func suiteMismatchInStore(saved, want *Suite) error {
	return fmt.Errorf("%w: %w: the store holds a client of suite %q, this one runs suite %q; it was left as it is",
		ErrStore, ErrSuiteMismatch, saved.name, want.name)
}
