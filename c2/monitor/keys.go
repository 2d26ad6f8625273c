package monitor

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
)

// lookupTimeout bounds one read of keys from the service.
const lookupTimeout = 5 * time.Second

// retryAfterFailure is how long after reading a topic's keys a message no
// key opens makes the monitor read them again.
const retryAfterFailure = time.Second

// maxForgotten is how many removed topics the e4 clients may still hold
// keys of before they are rebuilt.
const maxForgotten = 1024

// clientPair holds the topic keys in two e4 clients used only to open
// messages (no clock check, no replay cache: the monitor does both): one
// with each topic's current key, one with its previous key. The e4 clients
// keep one key per topic and cache topics by name, so the hot path runs no
// SHA3 and no key expansion.
type clientPair struct {
	current, previous *e4.Client
}

func newClientPair(suite *e4.Suite) (*clientPair, error) {
	cfg := &e4.Config{Suite: suite, NoClock: true, ReplayCacheSize: -1, KeyTransition: time.Nanosecond}
	var p clientPair
	for _, c := range []**e4.Client{&p.current, &p.previous} {
		var id e4.ID
		key := make([]byte, e4.KeyLen)
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		client, err := e4.NewSymKeyClient(id, key, cfg)
		clear(key)
		if err != nil {
			return nil, err
		}
		*c = client
	}
	return &p, nil
}

// topicState is what the monitor knows of one topic; it is replaced, never
// changed, except for stale.
type topicState struct {
	name        string
	managed     bool // false: C2 has no such topic
	hash        e4.TopicHash
	version     uint64
	rotatedAt   time.Time
	hasPrevious bool
	loadedAt    time.Time
	clients     *clientPair  // the pair the keys were installed in
	stale       atomic.Bool  // Notify: read the keys again
	valid       atomic.Int64 // valid messages not reported yet (tally)
}

// keyCache holds the state of the topics seen, bounded by MaxTopics.
type keyCache struct {
	m       *Monitor
	mu      sync.RWMutex
	topics  map[string]*topicState
	clients atomic.Pointer[clientPair]

	loadMu    sync.Mutex // serializes reads from the service
	forgotten int        // removed topics whose keys the clients still hold; under loadMu
	lastError time.Time  // of the last error logged; under loadMu
}

func newKeyCache(m *Monitor) (*keyCache, error) {
	k := &keyCache{m: m, topics: make(map[string]*topicState)}
	pair, err := newClientPair(m.suite)
	if err != nil {
		return nil, err
	}
	k.clients.Store(pair)
	return k, nil
}

// lookup returns the state of a managed topic, reading its keys when they
// are missing, stale or older than RefreshEvery; nil for a topic C2 does
// not manage.
func (k *keyCache) lookup(topic string, now time.Time) *topicState {
	k.mu.RLock()
	st := k.topics[topic]
	k.mu.RUnlock()
	if st == nil || !k.freshAt(st, now) {
		st = k.load(topic, st)
	}
	if st == nil || !st.managed {
		return nil
	}
	return st
}

func (k *keyCache) fresh(st *topicState) bool { return k.freshAt(st, k.m.cfg.Now()) }

func (k *keyCache) freshAt(st *topicState, now time.Time) bool {
	return !st.stale.Load() && now.Sub(st.loadedAt) < k.m.cfg.RefreshEvery && st.clients == k.clients.Load()
}

// reloadAfterFailure reads the keys of a topic again when a message opened
// under none of them and they were read more than retryAfterFailure ago;
// it returns the new state, or nil when there is nothing new to try.
func (k *keyCache) reloadAfterFailure(st *topicState) *topicState {
	if k.m.cfg.Now().Sub(st.loadedAt) < retryAfterFailure {
		return nil
	}
	fresh := k.load(st.name, st)
	if fresh == nil || !fresh.managed || fresh == st {
		return nil
	}
	if fresh.version == st.version && fresh.hasPrevious == st.hasPrevious && fresh.clients == st.clients {
		return nil
	}
	return fresh
}

// load reads a topic's keys from the service, unless another worker did
// since old was found.
func (k *keyCache) load(topic string, old *topicState) *topicState {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	k.mu.RLock()
	cur := k.topics[topic]
	k.mu.RUnlock()
	if cur != old && cur != nil && k.fresh(cur) {
		return cur
	}
	now := k.m.cfg.Now()
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	keys, err := k.m.svc.MonitorTopicKeys(ctx, topic)
	st := &topicState{name: topic, loadedAt: now}
	switch {
	case errors.Is(err, c2.ErrNotFound) || errors.Is(err, c2.ErrInvalidArgument):
		if old != nil && old.managed {
			k.forgotten++
		}
	case err != nil:
		if now.Sub(k.lastError) > time.Minute {
			k.lastError = now
			k.m.cfg.Logger.Warn("monitor: cannot read a topic's keys; its messages are not checked meanwhile", "topic", topic, "err", err)
		}
		if old != nil {
			return old
		}
		return nil
	default:
		if err := k.install(st, &keys); err != nil {
			k.m.cfg.Logger.Warn("monitor: cannot use a topic's keys", "topic", topic, "err", err)
			return nil
		}
	}
	k.store(st)
	return st
}

// install puts the keys in the e4 clients and fills st; it clears the
// keys.
func (k *keyCache) install(st *topicState, keys *c2.MonitorKeys) error {
	defer clear(keys.Current)
	defer clear(keys.Previous)
	if k.forgotten > maxForgotten {
		if err := k.rebuild(); err != nil {
			return err
		}
	}
	pair := k.clients.Load()
	if err := pair.current.SetTopicKey(keys.Current, st.name); err != nil {
		return err
	}
	if keys.Previous != nil {
		if err := pair.previous.SetTopicKey(keys.Previous, st.name); err != nil {
			return err
		}
	}
	st.managed, st.hash, st.version, st.rotatedAt = true, k.m.suite.HashTopic(st.name), keys.Version, keys.RotatedAt
	st.hasPrevious, st.clients = keys.Previous != nil, pair
	return nil
}

// rebuild starts new e4 clients, which hold no key of removed topics;
// every topic reads its keys again on its next message. The caller holds
// loadMu.
func (k *keyCache) rebuild() error {
	pair, err := newClientPair(k.m.suite)
	if err != nil {
		return err
	}
	k.clients.Store(pair)
	k.forgotten = 0
	return nil
}

// store caches st, keeping at most MaxTopics topics: when full it forgets
// the topics C2 does not manage, then, if still full, every topic.
func (k *keyCache) store(st *topicState) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.topics[st.name]; !ok && len(k.topics) >= k.m.cfg.MaxTopics {
		for name, t := range k.topics {
			if !t.managed {
				delete(k.topics, name)
			}
		}
		if len(k.topics) >= k.m.cfg.MaxTopics {
			clear(k.topics)
		}
	}
	k.topics[st.name] = st
}

func (k *keyCache) markStale(topic string) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if st := k.topics[topic]; st != nil {
		st.stale.Store(true)
	}
}

// size returns the number of topics cached.
func (k *keyCache) size() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.topics)
}

// signerCache holds the public keys of the senders seen (PK mode), and the
// ids C2 does not know, each for RefreshEvery, at most max of them.
type signerCache struct {
	mu      sync.RWMutex
	max     int
	signers map[e4.ID]signerEntry
}

type signerEntry struct {
	pub ed25519.PublicKey // nil: unknown sender
	at  time.Time
}

func newSignerCache(max int) *signerCache {
	return &signerCache{max: max, signers: make(map[e4.ID]signerEntry)}
}

// lookup returns the public key of sender, and false when C2 knows no such
// sender (or cannot tell now).
func (s *signerCache) lookup(m *Monitor, sender e4.ID) (ed25519.PublicKey, bool) {
	now := m.cfg.Now()
	s.mu.RLock()
	e, ok := s.signers[sender]
	s.mu.RUnlock()
	if ok && now.Sub(e.at) < m.cfg.RefreshEvery {
		return e.pub, e.pub != nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	pub, err := m.svc.MonitorSigner(ctx, sender)
	if err != nil && !errors.Is(err, e4.ErrPubKeyNotFound) {
		m.cfg.Logger.Warn("monitor: cannot read a sender's public key", "sender", sender.String(), "err", err)
		return nil, false
	}
	s.mu.Lock()
	if len(s.signers) >= s.max {
		clear(s.signers)
	}
	s.signers[sender] = signerEntry{pub: pub, at: now}
	s.mu.Unlock()
	return pub, pub != nil
}

func (s *signerCache) forget(id e4.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.signers, id)
}

func (s *signerCache) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.signers)
}
