package e4

import (
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/e4/internal/check"
	"github.com/e4-iot/e4kit/e4/siv"
	"github.com/e4-iot/e4kit/e4/store"
)

// Store persists a client's state; see package store for the file and
// in-memory implementations.
type Store = store.Store

// Mode is the protection mode of a client.
type Mode int

// The two modes of E4 v1.
const (
	// SymKey clients protect messages with the topic key only.
	SymKey Mode = 1
	// PubKey clients also sign every message with their Ed25519 key and
	// verify the signature of every message they receive.
	PubKey Mode = 2
)

// String returns "sk" or "pk".
func (m Mode) String() string {
	switch m {
	case SymKey:
		return "sk"
	case PubKey:
		return "pk"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// maxNameCache bounds the topic-name cache; when full it starts over, so a
// flood of distinct topic names costs hashing, not memory.
const maxNameCache = 4096

// Client is an E4 device: it protects messages it publishes, unprotects
// messages it receives, and applies the commands C2 sends to its control
// topic. A Client is safe for concurrent use by multiple goroutines.
type Client struct {
	cfg          Config
	id           ID
	mode         Mode
	suite        *Suite // never nil
	controlTopic string
	replay       *replayCache // nil when replay protection is off
	clock        wallClock    // used when cfg.Now is nil
	fresh        bool         // created without saved state; see Fresh

	// saveMu serializes saves (see persist); savedGeneration, the
	// generation of the last saved snapshot, is guarded by it.
	saveMu          sync.Mutex
	savedGeneration uint64

	mu sync.RWMutex // guards everything below
	state
	generation    uint64 // counts changes to state, for persist
	commandCipher *siv.Cipher
	names         map[string]*topicKeys // cache of topics by name; only keyed topics
}

// topicKeys is what a client holds for one topic. An entry is never
// replaced while it is in the topics map, only changed in place, so that the
// name cache may point to it; ResetTopics empties both maps.
type topicKeys struct {
	hash       TopicHash
	current    *siv.Cipher // nil for a removed topic (a tombstone)
	previous   *siv.Cipher // still accepted until prevUntil
	key        [KeyLen]byte
	prevKey    [KeyLen]byte
	prevUntil  time.Time
	order      mark // the command that last set or removed the key
	hasPrevKey bool
}

// state is everything a client persists.
type state struct {
	symKey       [KeyLen]byte             // SK mode: the client key, also the command key
	signKey      ed25519.PrivateKey       // PK mode
	c2Public     []byte                   // PK mode: C2's X25519 public key
	topics       map[TopicHash]*topicKeys // with tombstones of removed topics
	signers      map[ID]*verifier
	signerOrder  map[ID]mark // last SetPubKey or RemovePubKey per id, removed ids included
	resetTopics  mark        // last ResetTopics
	resetPubKeys mark        // last ResetPubKeys
	idKeyOrder   mark        // last SetIDKey
	c2KeyOrder   mark        // last SetC2Key
}

// mark orders the commands applied to one item (a topic, a sender, or one
// of the four singletons: ResetTopics, ResetPubKeys, SetIDKey, SetC2Key): it
// holds the timestamp and digest (CommandDigest) of the last command
// applied. Marks are saved with the state, so a restart does not reopen the
// door to old commands. A local change (SetTopicKey, SetPubKey methods) has
// a zero digest.
type mark struct {
	at     uint64
	digest [AckDigestLen]byte
}

// NewSymKeyClient returns a symmetric-key client with the given id and
// 32-byte client key. cfg may be nil for the defaults.
//
// With a Store in cfg that already holds a state, the client is that state
// (the saved client key wins over key, since a SetIDKey may have replaced
// it): keys survive a restart. A saved state of another id or mode is an
// error, as is a damaged one; neither is overwritten. With an empty Store,
// the new state is saved before the client is returned, and Fresh reports
// true.
func NewSymKeyClient(id ID, key []byte, cfg *Config) (*Client, error) {
	c := newClient(id, SymKey, cfg)
	if err := c.setSymKey(key); err != nil {
		return nil, err
	}
	return c.loadOrSave()
}

// NewPubKeyClient returns a public-key client with the given id, its Ed25519
// private key and C2's X25519 public key. cfg may be nil for the defaults.
// With a Store in cfg, it loads or saves the state as NewSymKeyClient does
// (the saved keys win over signKey and c2Public).
func NewPubKeyClient(id ID, signKey ed25519.PrivateKey, c2Public []byte, cfg *Config) (*Client, error) {
	c := newClient(id, PubKey, cfg)
	if err := c.setSignKey(signKey); err != nil {
		return nil, err
	}
	if err := c.setC2Key(c2Public); err != nil {
		return nil, err
	}
	return c.loadOrSave()
}

// loadOrSave returns the client saved in the Store, if there is one and it
// has c's id and mode; otherwise it saves c, a fresh client, and returns it.
func (c *Client) loadOrSave() (*Client, error) {
	if c.cfg.Store == nil {
		c.fresh = true
		return c, nil
	}
	saved, err := LoadClient(&c.cfg)
	switch {
	case err == nil:
		if saved.id != c.id || saved.mode != c.mode {
			return nil, fmt.Errorf("%w: the store holds client %v in %v mode, not client %v in %v mode; it was left as it is",
				ErrStore, saved.id, saved.mode, c.id, c.mode)
		}
		if saved.suite != c.suite {
			return nil, suiteMismatchInStore(saved.suite, c.suite)
		}
		return saved, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	c.fresh = true
	return c, c.persist()
}

func newClient(id ID, mode Mode, cfg *Config) *Client {
	c := &Client{id: id, mode: mode, controlTopic: ControlTopic(id), names: make(map[string]*topicKeys)}
	if cfg != nil {
		c.cfg = *cfg
	}
	c.suite = c.cfg.Suite.orV1()
	c.topics = make(map[TopicHash]*topicKeys)
	c.signers = make(map[ID]*verifier)
	c.signerOrder = make(map[ID]mark)
	c.generation = 1 // not saved yet
	switch {
	case c.cfg.ReplayCacheSize == 0:
		c.replay = newReplayCache(DefaultReplayCacheSize)
	case c.cfg.ReplayCacheSize > 0:
		c.replay = newReplayCache(c.cfg.ReplayCacheSize)
	}
	return c
}

// ID returns the client's id.
func (c *Client) ID() ID { return c.id }

// Mode returns SymKey or PubKey.
func (c *Client) Mode() Mode { return c.mode }

// Suite returns the client's suite (V1 unless Config.Suite says otherwise).
func (c *Client) Suite() *Suite { return c.suite }

// ControlTopic returns the topic on which the client receives commands.
func (c *Client) ControlTopic() string { return c.controlTopic }

// PublicKey returns the client's Ed25519 public key in PK mode, nil in SK mode.
func (c *Client) PublicKey() ed25519.PublicKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.signKey == nil {
		return nil
	}
	return append(ed25519.PublicKey(nil), c.signKey.Public().(ed25519.PublicKey)...)
}

// HasTopicKey reports whether the client holds a key for topic.
func (c *Client) HasTopicKey(topic string) bool {
	_, err := c.topicCipher(topic)
	return err == nil
}

func (c *Client) setSymKey(key []byte) error {
	if err := checkSymKey(key); err != nil {
		return err
	}
	cipher, err := c.suite.newTopicCipher(key)
	if err != nil {
		return err
	}
	copy(c.symKey[:], key)
	c.commandCipher = cipher
	return nil
}

func (c *Client) setSignKey(priv []byte) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: Ed25519 private key must be %d bytes, got %d", ErrInvalidKey, ed25519.PrivateKeySize, len(priv))
	}
	key := ed25519.NewKeyFromSeed(priv[:ed25519.SeedSize])
	if subtle.ConstantTimeCompare(key[ed25519.SeedSize:], priv[ed25519.SeedSize:]) != 1 {
		return fmt.Errorf("%w: Ed25519 private key: public half does not match the seed", ErrInvalidKey)
	}
	c.signKey = key
	return c.refreshPKCommandKey()
}

func (c *Client) setC2Key(c2Public []byte) error {
	if len(c2Public) != KeyLen {
		return fmt.Errorf("%w: C2 public key must be %d bytes, got %d", ErrInvalidKey, KeyLen, len(c2Public))
	}
	old := c.c2Public
	c.c2Public = append([]byte(nil), c2Public...)
	if err := c.refreshPKCommandKey(); err != nil {
		c.c2Public = old
		return err
	}
	return nil
}

// refreshPKCommandKey derives the PK command key once both halves are known.
func (c *Client) refreshPKCommandKey() error {
	if c.signKey == nil || c.c2Public == nil {
		return nil
	}
	key, err := c.suite.ClientCommandKey(c.signKey, c.c2Public)
	if err != nil {
		return err
	}
	cipher, err := c.suite.newTopicCipher(key)
	if err != nil {
		return err
	}
	c.commandCipher = cipher
	return nil
}

// checkSymKey refuses keys of the wrong size and the all-zero key.
func checkSymKey(key []byte) error { return check.SymKey(key) }

// topicCiphers is a consistent copy of a topic's ciphers, taken under the
// read lock, so the caller can use it after releasing the lock.
type topicCiphers struct {
	hash      TopicHash
	current   *siv.Cipher
	previous  *siv.Cipher
	prevUntil time.Time
}

// lookupTopic returns the ciphers of a topic. A topic seen before is found
// by name with one map lookup under the read lock, so the hot path runs no
// SHA3; the name of a topic without a key is not cached.
func (c *Client) lookupTopic(topic string) topicCiphers {
	c.mu.RLock()
	t := c.names[topic]
	if t == nil {
		c.mu.RUnlock()
		return c.lookupTopicSlow(topic)
	}
	tc := topicCiphers{hash: t.hash, current: t.current, previous: t.previous, prevUntil: t.prevUntil}
	c.mu.RUnlock()
	return tc
}

// lookupTopicSlow hashes the name and, if the topic has an entry, caches it.
func (c *Client) lookupTopicSlow(topic string) topicCiphers {
	h := c.suite.HashTopic(topic)
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.topics[h]
	if t == nil {
		return topicCiphers{hash: h}
	}
	if len(c.names) >= maxNameCache {
		clear(c.names)
	}
	c.names[topic] = t
	return topicCiphers{hash: h, current: t.current, previous: t.previous, prevUntil: t.prevUntil}
}

// topicCipher returns the current cipher for a topic.
func (c *Client) topicCipher(topic string) (*siv.Cipher, error) {
	if tc := c.lookupTopic(topic); tc.current != nil {
		return tc.current, nil
	}
	return nil, ErrTopicKeyNotFound
}
