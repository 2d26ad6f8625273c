package c2

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

func newX25519Private() ([]byte, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return k.Bytes(), nil
}

func x25519Public(private []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("c2: stored C2 key: %w", err)
	}
	return k.PublicKey().Bytes(), nil
}

func newSymmetricKey() ([]byte, error) {
	key := make([]byte, e4.KeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

// Bindings name the row a sealed value belongs to (see package seal).
func clientKeyBinding(id e4.ID) string { return "client-key/" + id.String() }

func topicKeyBinding(name string, version uint64) string {
	return fmt.Sprintf("topic-key/%d/%s", version, name)
}

func commandBinding(id store.CommandID, client e4.ID) string {
	return fmt.Sprintf("command/%x/%s", id[:], client)
}

// topicKey opens a topic's current key.
func (s *Service) topicKey(t store.Topic) ([]byte, error) {
	return s.keys.Open(t.SealedKey, topicKeyBinding(t.Name, t.KeyVersion))
}

// commandKey returns the key that protects commands for c as the device
// holds it now: its own key in SK mode, the X25519 agreement between C2's
// key and the device's key in PK mode. The caller holds pairMu.
func (s *Service) commandKey(c store.Client) ([]byte, error) {
	if s.cfg.Mode == e4.SymKey {
		return s.keys.Open(c.SealedKey, clientKeyBinding(c.ID))
	}
	pair := s.pk
	if key, ok := s.cmd.get(c.ID, pair.public, c.PublicKey); ok {
		return key, nil
	}
	key, err := s.Suite().C2CommandKey(pair.private, c.PublicKey)
	if err != nil {
		return nil, err
	}
	s.cmd.put(c.ID, pair.public, c.PublicKey, key)
	return key, nil
}

// commandKeyCache remembers PK-mode command keys, which cost an X25519
// multiplication each, so a rotation to many members repeats none. An
// entry is valid only for the C2 key and the client key it was made from.
type commandKeyCache struct {
	mu      sync.Mutex
	entries map[e4.ID]cachedCommandKey
}

type cachedCommandKey struct {
	c2Public, clientPublic string
	key                    []byte
}

const maxCommandKeyCache = 1 << 16

func newCommandKeyCache() *commandKeyCache {
	return &commandKeyCache{entries: make(map[e4.ID]cachedCommandKey)}
}

func (c *commandKeyCache) get(id e4.ID, c2Public, clientPublic []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.c2Public != string(c2Public) || e.clientPublic != string(clientPublic) {
		return nil, false
	}
	return e.key, true
}

func (c *commandKeyCache) put(id e4.ID, c2Public, clientPublic, key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCommandKeyCache {
		clear(c.entries) // start over rather than grow without bound
	}
	c.entries[id] = cachedCommandKey{string(c2Public), string(clientPublic), key}
}
