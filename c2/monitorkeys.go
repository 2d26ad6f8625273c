package c2

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// What the monitor (package c2/monitor) reads from the service: the key
// material of a topic, the public key of a sender, and a place to publish
// its counters so the API can serve them. Nothing here changes state.

// MonitorKeys is a topic's key material as the monitor needs it to check
// the messages on the topic. It holds keys: never log it, and clear the
// slices when done.
type MonitorKeys struct {
	// Version is the version of Current.
	Version uint64
	// Current is the topic's key now.
	Current []byte
	// RotatedAt is when Current replaced Previous.
	RotatedAt time.Time
	// Previous is the key Current replaced, when this C2 process did the
	// rotation (it keeps the replaced key in memory only: after a restart,
	// or when another C2 replica rotated the topic, Previous is nil).
	Previous []byte
	// PreviousRevoked reports a previous key retired because a member was
	// removed: devices are told to drop it at once (RemoveTopic before
	// SetTopicKey), so there is no transition window for it.
	PreviousRevoked bool
}

// retiredKey is a topic key replaced by a rotation, kept sealed.
type retiredKey struct {
	topic   string
	version uint64 // the version of the retired key
	sealed  []byte
	revoked bool
}

// retiredKeys holds, per topic, the key replaced by the last rotation this
// process made; one entry per topic, forgotten when the topic is removed.
type retiredKeys struct {
	mu   sync.Mutex
	keys map[string]retiredKey
}

func (r *retiredKeys) record(list []retiredKey) {
	if len(list) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = make(map[string]retiredKey)
	}
	for _, k := range list {
		r.keys[k.topic] = k
	}
}

func (r *retiredKeys) forget(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, topic)
}

func (r *retiredKeys) get(topic string) (retiredKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.keys[topic]
	return k, ok
}

// retire notes, in the events of a transaction, the key a rotation
// replaces; the service records it once the transaction committed.
func (ev *events) retire(old store.Topic, revoked bool) {
	ev.retired = append(ev.retired, retiredKey{topic: old.Name, version: old.KeyVersion, sealed: old.SealedKey, revoked: revoked})
}

// afterCommit records what a committed transaction retired or removed.
func (r *retiredKeys) afterCommit(ev *events) {
	r.record(ev.retired)
	for _, e := range ev.list {
		if e.Kind == EventTopicRemoved {
			r.forget(e.Topic)
		}
	}
}

// MonitorTopicKeys returns a topic's current key and, when this process
// rotated it, the key the rotation replaced: for the monitor only, which
// checks under which key each message on the topic was protected.
func (s *Service) MonitorTopicKeys(ctx context.Context, topic string) (MonitorKeys, error) {
	if err := checkTopic(topic); err != nil {
		return MonitorKeys{}, err
	}
	var t store.Topic
	err := s.view(ctx, func(tx store.Tx) (err error) {
		t, err = getTopic(tx, topic)
		return err
	})
	if err != nil {
		return MonitorKeys{}, err
	}
	current, err := s.topicKey(t)
	if err != nil {
		return MonitorKeys{}, err
	}
	out := MonitorKeys{Version: t.KeyVersion, Current: current, RotatedAt: t.RotatedAt}
	if old, ok := s.retired.get(topic); ok && old.version+1 == t.KeyVersion {
		// A key that no longer opens (a rekey since) is simply unknown.
		if prev, err := s.keys.Open(old.sealed, topicKeyBinding(topic, old.version)); err == nil {
			out.Previous, out.PreviousRevoked = prev, old.revoked
		}
	}
	return out, nil
}

// MonitorSigner returns the Ed25519 public key of the sender id of a
// public-key message: a client's, or C2's own signing key. It fails with
// e4.ErrPubKeyNotFound for an id C2 does not know, and with ErrWrongMode
// in symmetric-key mode.
func (s *Service) MonitorSigner(ctx context.Context, sender e4.ID) (ed25519.PublicKey, error) {
	pair, err := s.c2Keys()
	if err != nil {
		return nil, err
	}
	if sender == pair.signerID {
		return pair.signer.Public().(ed25519.PublicKey), nil
	}
	var c store.Client
	err = s.view(ctx, func(tx store.Tx) (err error) {
		c, err = tx.GetClient(sender)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(c.PublicKey) == 0) {
		return nil, fmt.Errorf("%w: sender %s is not a client with a public key", e4.ErrPubKeyNotFound, sender)
	}
	if err != nil {
		return nil, err
	}
	return c.PublicKey, nil
}

// MonitorStats are the counters of the monitor since it started.
type MonitorStats struct {
	// Since is when the monitor started.
	Since time.Time
	// Results counts the messages checked, by result (valid,
	// previous_key, auth_failed, replay, too_old, future, not_e4,
	// unknown_signer).
	Results map[string]uint64
	// Ignored counts the messages on topics C2 does not manage (and on
	// control topics), which are not checked.
	Ignored uint64
	// Dropped counts the messages the transport dropped before the monitor
	// could read them (a full subscription queue), where it reports it.
	Dropped uint64
	// Topics are the subscription filters.
	Topics []string
}

// MonitorTopEntry is one line of a top-k list: a topic or a sender id and
// the messages counted for it. Count may overestimate by at most Error
// (the space-saving bound: the entry took the place of one evicted with
// that count); ByResult counts exactly since the entry was added.
type MonitorTopEntry struct {
	Key      string
	Count    uint64
	Error    uint64
	ByResult map[string]uint64
}

// MonitorSource is what the monitor offers the service's callers.
type MonitorSource interface {
	// MonitorStats returns the counters.
	MonitorStats() MonitorStats
	// MonitorTop returns up to limit entries, most counted first, of the
	// top list by "topic" or "sender", of messages with the given result
	// ("" or "anomalies": every result but valid; "all": every message).
	MonitorTop(by, result string, limit int) ([]MonitorTopEntry, error)
}

// SetMonitor makes m the monitor whose counters MonitorStats and
// MonitorTop return; nil detaches it.
func (s *Service) SetMonitor(m MonitorSource) {
	s.monitor.Store(&m)
}

func (s *Service) monitorSource() (MonitorSource, error) {
	p := s.monitor.Load()
	if p == nil || *p == nil {
		return nil, fmt.Errorf("%w: the monitor is off (e4 c2 serve --monitor)", ErrNotEnabled)
	}
	return *p, nil
}

// MonitorStats returns the monitor's counters, or ErrNotEnabled when no
// monitor runs.
func (s *Service) MonitorStats(ctx context.Context) (MonitorStats, error) {
	m, err := s.monitorSource()
	if err != nil {
		return MonitorStats{}, err
	}
	return m.MonitorStats(), ctx.Err()
}

// MonitorTop returns a top-k list of the monitor (see MonitorSource), or
// ErrNotEnabled when no monitor runs.
func (s *Service) MonitorTop(ctx context.Context, by, result string, limit int) ([]MonitorTopEntry, error) {
	m, err := s.monitorSource()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.MonitorTop(by, result, limit)
}
