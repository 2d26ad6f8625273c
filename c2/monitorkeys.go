package c2

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
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
	// Previous is the key Current replaced, while devices may still use
	// it: from the database, so every C2 replica and a restarted C2 see
	// it. It is nil when there is none: no rotation yet, a rotation after
	// a member removal (the old key was revoked: devices were told to
	// drop it at once, and C2 does not keep it), or the transition window
	// (Config.TopicKeyTransition) is over.
	Previous []byte
}

// topicKeyTransition is how long after a rotation C2 keeps the replaced
// topic key.
func (s *Service) topicKeyTransition() time.Duration {
	if s.cfg.TopicKeyTransition > 0 {
		return s.cfg.TopicKeyTransition
	}
	return e4.DefaultKeyTransition
}

// MonitorTopicKeys returns a topic's current key and, within its
// transition window, the key the last rotation replaced: for the monitor
// only, which checks under which key each message on the topic was
// protected. Nothing else in C2 reads the previous key, and no API call
// returns it.
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
	if t.PrevSealedKey == nil || t.KeyVersion < 2 || !s.now().Before(t.RotatedAt.Add(s.topicKeyTransition())) {
		return out, nil
	}
	prev, err := s.keys.Open(t.PrevSealedKey, topicKeyBinding(topic, t.KeyVersion-1))
	if err != nil {
		// The current key still checks the topic's messages: a damaged
		// previous key only makes lagging devices count as failures.
		s.log.Warn("monitor: the previous key of a topic does not open; its messages are checked under the current key only",
			"topic", topic, "version", t.KeyVersion-1, "err", err)
		return out, nil
	}
	out.Previous = prev
	return out, nil
}

// forgetPreviousTopicKeys clears, in the database, the previous topic keys
// whose transition window is over (MonitorTopicKeys already ignores them).
func (s *Service) forgetPreviousTopicKeys(ctx context.Context, now time.Time) error {
	before := now.Add(-s.topicKeyTransition())
	var found bool
	err := s.view(ctx, func(tx store.Tx) (err error) {
		found, err = tx.HasPreviousTopicKeys(before)
		return err
	})
	if err != nil || !found {
		if err != nil {
			err = fmt.Errorf("looking for previous topic keys to forget: %w", err)
		}
		return err
	}
	var n int64
	err = s.st.Update(ctx, func(tx store.Tx) (err error) {
		n, err = tx.ForgetPreviousTopicKeys(before)
		return err
	})
	if err != nil {
		return fmt.Errorf("forgetting previous topic keys: %w", err)
	}
	if n > 0 {
		s.log.Debug("previous topic keys forgotten after their transition window", "topics", n)
	}
	return nil
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
