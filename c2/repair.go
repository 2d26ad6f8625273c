package c2

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4/command"
)

// repairLoop scans the state of devices every RepairInterval until ctx
// ends: it sends the current key to members still behind, ends expired
// client-key changes and previous topic keys, reports converged and
// overdue topics and forgets old sent commands.
func (d *Dispatcher) repairLoop(ctx context.Context) {
	tick := time.NewTicker(d.cfg.RepairInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		if err := d.repairOnce(ctx); err != nil && ctx.Err() == nil {
			d.s.log.Warn("repairing device state", "err", err)
		}
	}
}

// repairOnce runs one scan.
func (d *Dispatcher) repairOnce(ctx context.Context) error {
	now := d.s.now().UTC()
	var errs []error
	if d.cfg.AwaitAck > 0 {
		n, err := d.repair(ctx, true, now.Add(-d.cfg.AwaitAck), now.Add(-d.cfg.RepairIdle))
		d.repaired.Add(uint64(n))
		d.logResent(n, "repair: acknowledging devices still behind after await_ack")
		errs = append(errs, err)
	}
	if d.cfg.ResendEvery > 0 {
		n, err := d.repair(ctx, false, now.Add(-d.cfg.ResendEvery), time.Time{})
		d.resent.Add(uint64(n))
		d.logResent(n, "resend_every: devices that do not acknowledge")
		errs = append(errs, err)
	}
	errs = append(errs, d.s.expireKeyChanges(ctx, now, d.cfg.ClientKeyGrace))
	errs = append(errs, d.s.forgetPreviousTopicKeys(ctx, now))
	errs = append(errs, d.reportTopics(ctx, now))
	d.acks.forgetBefore(now.Add(-max(10*time.Minute, 2*d.cfg.AwaitAck)))
	return errors.Join(errs...)
}

// logResent logs, at debug level, the current keys queued again by one
// scan.
func (d *Dispatcher) logResent(n int, why string) {
	if n > 0 {
		d.s.log.Debug("current topic keys queued again", "commands", n, "why", why)
	}
}

// repair queues one SetTopicKey with the current key for each membership
// behind whose last command was sent before sentBefore (before idleBefore
// if the device was not heard from since) and none is pending, of devices
// that acknowledge or of the others; at most RepairBatch per scan, at the
// catch-up command rate. It returns how many it queued.
func (d *Dispatcher) repair(ctx context.Context, acknowledging bool, sentBefore, idleBefore time.Time) (int, error) {
	var items []store.RepairItem
	err := d.s.view(ctx, func(tx store.Tx) (err error) {
		items, err = tx.ItemsToRepair(store.RepairFilter{Acknowledging: acknowledging, SentBefore: sentBefore, IdleBefore: idleBefore, Limit: d.cfg.RepairBatch})
		return err
	})
	if err != nil || len(items) == 0 {
		return 0, err
	}
	if err := d.catchUp.waitCommands(ctx, len(items)); err != nil {
		return 0, err
	}
	var queued int
	err = d.s.update(ctx, func(tx store.Tx, ev *events) error {
		queued = 0
		out := make([]outgoing, 0, len(items))
		for _, it := range items {
			o, ok, err := d.s.repairItem(tx, it)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, o)
			}
		}
		queued = len(out)
		return d.s.enqueue(tx, ev, out...)
	})
	return queued, err
}

// repairItem builds the SetTopicKey of one membership, if it still is one
// and nothing is pending for it.
func (s *Service) repairItem(tx store.Tx, it store.RepairItem) (outgoing, bool, error) {
	member, err := tx.IsMember(it.ClientID, it.Topic)
	if err != nil || !member {
		return outgoing{}, false, err
	}
	pending, err := tx.HasPendingCommand(it.ClientID, it.Topic, command.SetTopicKey.String())
	if err != nil || pending {
		return outgoing{}, false, err
	}
	c, err := getClient(tx, it.ClientID)
	if err != nil {
		return outgoing{}, false, err
	}
	t, err := getTopic(tx, it.Topic)
	if err != nil {
		return outgoing{}, false, err
	}
	cmd, err := s.setTopicKeyCommand(t)
	if err != nil {
		return outgoing{}, false, err
	}
	return outgoing{client: c, cmd: cmd, target: t.Name}, true, nil
}

// topicWatch remembers the topics to report on: rotated ones until they
// converge or are reported behind, and those a device acknowledged since
// the last scan.
type topicWatch struct {
	mu       sync.Mutex
	rotated  map[string]time.Time // topic -> rotation time
	touched  map[string]bool
	reported map[string]uint64 // topic -> version reported converged
}

func newTopicWatch() *topicWatch {
	return &topicWatch{rotated: make(map[string]time.Time), touched: make(map[string]bool), reported: make(map[string]uint64)}
}

// maxWatched bounds the topics watched at once.
const maxWatched = 1 << 14

func (w *topicWatch) rotate(topic string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.rotated) < maxWatched {
		w.rotated[topic] = at
	}
}

func (w *topicWatch) touch(topic string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.touched) < maxWatched {
		w.touched[topic] = true
	}
}

// take returns the topics to look at and empties the touched set.
func (w *topicWatch) take() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]time.Time, len(w.rotated)+len(w.touched))
	for t := range w.touched {
		out[t] = time.Time{}
	}
	for t, at := range w.rotated {
		out[t] = at
	}
	clear(w.touched)
	return out
}

// done stops watching a rotated topic.
func (w *topicWatch) done(topic string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rotated, topic)
}

// converged reports whether version of topic is newly converged.
func (w *topicWatch) converged(topic string, version uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reported[topic] >= version {
		return false
	}
	if len(w.reported) >= maxWatched {
		clear(w.reported)
	}
	w.reported[topic] = version
	return true
}

// reportTopics emits EventTopicConverged for watched topics whose members
// all acknowledged the current key, and EventDevicesBehind for rotated
// topics still behind BehindAfter after their rotation.
func (d *Dispatcher) reportTopics(ctx context.Context, now time.Time) error {
	var events []Event
	err := d.s.view(ctx, func(tx store.Tx) error {
		events = events[:0]
		for topic, rotatedAt := range d.watch.take() {
			counts, err := tx.TopicCounts(topic)
			if errors.Is(err, store.ErrNotFound) {
				d.watch.done(topic)
				continue
			}
			if err != nil {
				return err
			}
			if counts.Members > 0 && counts.Current == counts.Members {
				d.watch.done(topic)
				if d.watch.converged(topic, counts.Version) {
					events = append(events, Event{Kind: EventTopicConverged, Topic: topic,
						Detail: fmt.Sprintf("version %d, %d members", counts.Version, counts.Members)})
				}
				continue
			}
			if !rotatedAt.IsZero() && now.Sub(rotatedAt) >= d.cfg.BehindAfter {
				d.watch.done(topic)
				events = append(events, Event{Kind: EventDevicesBehind, Topic: topic, Detail: fmt.Sprintf(
					"version %d: %d of %d members acknowledged; %d behind, of which %d do not acknowledge",
					counts.Version, counts.Current, counts.Members, counts.Members-counts.Current,
					counts.Members-counts.Current-counts.BehindAcknowledging)})
			}
		}
		return nil
	})
	d.s.emit(events...)
	return err
}
