package c2

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
	"golang.org/x/time/rate"
)

// SyncFilter is the subscription on which C2 hears sync requests: devices
// that start or reconnect report what they hold (e4.SyncRequest), and C2
// sends only what is missing.
const SyncFilter = e4.ControlTopicPrefix + "+" + e4.SyncTopicSuffix

// CatchUpStats counts the sync requests a dispatcher received and what it
// did with them.
type CatchUpStats struct {
	// Received counts sync requests heard; Dropped those refused because
	// SyncQueue requests were already waiting (the device asks again at
	// its next reconnect); Queued is how many wait now.
	Received, Dropped uint64
	Queued            int
	// Handled counts the requests answered; Invalid those that no key of
	// their client opened (or from unknown clients).
	Handled, Invalid uint64
	// Commands counts the commands queued by catch-up.
	Commands uint64
}

// syncRequest is a sync request waiting to be handled.
type syncRequest struct {
	client  e4.ID
	payload []byte
}

// catchUp receives sync requests into a bounded queue and answers them at
// a limited rate.
type catchUp struct {
	queue    chan syncRequest
	requests *rate.Limiter
	commands *rate.Limiter

	received, dropped, handled, invalid, commandsQueued atomic.Uint64
}

func newCatchUp(cfg CatchUpConfig) *catchUp {
	return &catchUp{
		queue:    make(chan syncRequest, cfg.SyncQueue),
		requests: rate.NewLimiter(rate.Limit(cfg.SyncRate), cfg.SyncBurst),
		commands: rate.NewLimiter(rate.Limit(cfg.CommandRate), cfg.CommandBurst),
	}
}

func (c *catchUp) stats() CatchUpStats {
	return CatchUpStats{
		Received: c.received.Load(), Dropped: c.dropped.Load(), Queued: len(c.queue),
		Handled: c.handled.Load(), Invalid: c.invalid.Load(), Commands: c.commandsQueued.Load(),
	}
}

// listen receives sync requests until ctx ends; it never waits for the
// handler: a full queue drops the request.
func (c *catchUp) listen(ctx context.Context, d *Dispatcher, sub transport.Subscription) {
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, transport.ErrClosed) {
				d.s.log.Warn("receiving sync requests", "err", err)
			}
			return
		}
		client, ok := clientOfTopic(msg.Topic, e4.SyncTopicSuffix)
		if !ok {
			continue
		}
		c.received.Add(1)
		select {
		case c.queue <- syncRequest{client: client, payload: msg.Payload}:
		default:
			c.dropped.Add(1)
		}
	}
}

// syncBatch is the most sync requests answered in one transaction: one
// transaction each made a fleet returning at once wait on the database's
// commits, not on the rate limit.
const syncBatch = 64

// run answers queued sync requests at the configured rate until ctx ends,
// those waiting together in one transaction.
func (c *catchUp) run(ctx context.Context, d *Dispatcher) {
	for {
		var first syncRequest
		select {
		case first = <-c.queue:
		case <-ctx.Done():
			return
		}
		batch := c.take(first, min(syncBatch, c.requests.Burst()))
		if c.requests.WaitN(ctx, len(batch)) != nil {
			return
		}
		queued := d.s.handleSyncs(ctx, batch, c)
		if c.waitCommands(ctx, queued) != nil {
			return
		}
	}
}

// take returns first and the requests already waiting behind it, up to
// limit in all.
func (c *catchUp) take(first syncRequest, limit int) []syncRequest {
	batch := []syncRequest{first}
	for len(batch) < max(limit, 1) {
		select {
		case req := <-c.queue:
			batch = append(batch, req)
			continue
		default:
		}
		break
	}
	return batch
}

// handleSyncs answers a batch of sync requests in one transaction and
// returns how many commands it queued. Should the transaction fail, each
// request is answered on its own, so one bad request cannot hold back the
// others.
func (s *Service) handleSyncs(ctx context.Context, batch []syncRequest, c *catchUp) int {
	type opened struct {
		client    e4.ID
		report    *e4.SyncReport
		underPrev bool
	}
	var ok []opened
	for _, req := range batch {
		report, underPrev, err := s.openSync(ctx, req.client, req.payload)
		if err != nil {
			c.failed(s, req.client, err)
			continue
		}
		ok = append(ok, opened{req.client, report, underPrev})
	}
	queued := 0
	err := s.update(ctx, func(tx store.Tx, ev *events) error {
		queued = 0
		for _, o := range ok {
			n, err := s.recordSyncTx(tx, ev, o.client, o.report, o.underPrev)
			if err != nil {
				return err
			}
			queued += n
		}
		return nil
	})
	if err == nil {
		c.handled.Add(uint64(len(ok)))
		c.commandsQueued.Add(uint64(queued))
		return queued
	}
	if len(ok) == 1 {
		c.failed(s, ok[0].client, err)
		return 0
	}
	queued = 0
	for _, o := range ok {
		var n int
		err := s.update(ctx, func(tx store.Tx, ev *events) (err error) {
			n, err = s.recordSyncTx(tx, ev, o.client, o.report, o.underPrev)
			return err
		})
		if err != nil {
			c.failed(s, o.client, err)
			continue
		}
		c.handled.Add(1)
		c.commandsQueued.Add(uint64(n))
		queued += n
	}
	return queued
}

// failed counts a sync request that could not be answered.
func (c *catchUp) failed(s *Service, client e4.ID, err error) {
	switch {
	case errors.Is(err, errBadSync):
		c.invalid.Add(1)
		s.log.Debug("a sync request no key of its client opens", "client", client.String(), "err", err)
	case err != nil && !errors.Is(err, context.Canceled):
		s.log.Warn("answering a sync request", "client", client.String(), "err", err)
	}
}

// waitCommands takes n tokens of the command bucket, a burst at a time,
// so catch-up and repairs enqueue at most CommandRate commands a second.
func (c *catchUp) waitCommands(ctx context.Context, n int) error {
	for n > 0 {
		k := min(n, c.commands.Burst())
		if err := c.commands.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// errBadSync reports a sync request that no key of its client opens, or
// from an unknown client.
var errBadSync = errors.New("c2: sync request not from a known device")

// recordSyncTx records what a device reported and queues, coalesced, what
// it misses, in tx; it returns how many commands it queued.
func (s *Service) recordSyncTx(tx store.Tx, ev *events, client e4.ID, report *e4.SyncReport, underPrev bool) (int, error) {
	before := ev.commands
	if err := s.recordSync(tx, ev, client, report, underPrev); err != nil {
		return 0, err
	}
	queued := ev.commands - before
	ev.add(EventDeviceSynced, &client, "", fmt.Sprintf("%d commands queued", queued))
	return queued, nil
}

// openSync tries the keys the device may protect its report under: its
// command key and, during a client-key change, its previous key.
func (s *Service) openSync(ctx context.Context, id e4.ID, msg []byte) (*e4.SyncReport, bool, error) {
	var keys []sendKey
	err := s.view(ctx, func(tx store.Tx) error {
		c, err := tx.GetClient(id)
		if err != nil {
			return err
		}
		s.pairMu.RLock()
		key, err := s.commandKey(c)
		s.pairMu.RUnlock()
		if err != nil {
			return err
		}
		keys = []sendKey{{key: key}}
		if s.cfg.Mode == e4.PubKey {
			s.pairMu.RLock()
			prev := s.prevPK
			s.pairMu.RUnlock()
			if prev != nil {
				old, err := e4.C2CommandKey(prev.private, c.PublicKey)
				if err != nil {
					return err
				}
				keys = append(keys, sendKey{key: old, prev: true})
			}
			return nil
		}
		ds, err := tx.GetDeviceState(id)
		if err != nil || ds.PrevSealedKey == nil {
			return err
		}
		k, err := s.openKeyChange(c, ds)
		if err != nil {
			return err
		}
		keys = append(keys, sendKey{key: k.prev, prev: true})
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, errBadSync
	}
	if err != nil {
		return nil, false, err
	}
	cfg := &e4.Config{Now: s.now}
	var errs []error
	for _, k := range keys {
		report, err := s.Suite().OpenSyncRequest(msg, k.key, cfg)
		if err == nil {
			return report, k.prev, nil
		}
		errs = append(errs, err)
	}
	return nil, false, fmt.Errorf("%w: %w", errBadSync, errors.Join(errs...))
}

// recordSync compares a report with what C2 wants the device to hold.
func (s *Service) recordSync(tx store.Tx, ev *events, id e4.ID, report *e4.SyncReport, underPrev bool) error {
	c, err := getClient(tx, id)
	if err != nil {
		return err
	}
	ds, err := tx.GetDeviceState(id)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	ds.AcksSeen, ds.LastSeen, ds.LastSync = true, now, now
	if ds.PrevSealedKey != nil {
		// First, so that a SetIDKey sent again goes before the rest.
		if err := s.learnKeyInUse(tx, ev, &ds, underPrev); err != nil {
			return err
		}
	}
	if s.cfg.Mode == e4.PubKey {
		// Likewise for a SetC2Key: a report under the command key made from
		// C2's previous key shows the device missed it; under the current
		// one, with the current key's tag, that it holds C2's key.
		if underPrev {
			if err := s.learnC2Key(tx, ev, &ds, c, true); err != nil {
				return err
			}
		} else if report.C2Key == e4.TagOfKey(s.pk.public) {
			ds.C2KeyAcked = s.pk.public
		}
	}
	if err := s.syncTopics(tx, ev, c, report.Topics, now); err != nil {
		return err
	}
	if s.cfg.Mode == e4.PubKey {
		if err := s.syncPubKeys(tx, ev, c, report.PubKeys, now); err != nil {
			return err
		}
	}
	return tx.PutDeviceState(ds)
}

// syncTopics records which topic keys the device holds and queues one
// SetTopicKey per topic missing or outdated (unless one is pending) and a
// RemoveTopic per topic it holds but is not a member of.
func (s *Service) syncTopics(tx store.Tx, ev *events, c store.Client, held []e4.HeldKey, now time.Time) error {
	tags := make(map[e4.TopicHash]e4.KeyTag, len(held))
	for _, h := range held {
		tags[e4.TopicHash(h.Hash)] = h.Tag
	}
	var out []outgoing
	after := ""
	for {
		page, err := tx.MemberStates(c.ID, after, memberPage)
		if err != nil {
			return err
		}
		for _, m := range page {
			o, err := s.syncTopic(tx, c, m, tags, now)
			if err != nil {
				return err
			}
			out = append(out, o...)
		}
		if len(page) < memberPage {
			break
		}
		after = page[len(page)-1].Topic
	}
	for hash := range tags {
		target := "topic-hash:" + hex.EncodeToString(hash[:])
		pending, err := tx.HasPendingCommand(c.ID, target, command.RemoveTopic.String())
		if err != nil {
			return err
		}
		if !pending {
			out = append(out, outgoing{client: c, cmd: command.NewRemoveTopic(hash), target: target})
		}
	}
	return s.enqueue(tx, ev, out...)
}

// syncTopic handles one membership of a sync report, removing its topic
// from tags.
func (s *Service) syncTopic(tx store.Tx, c store.Client, m store.MemberState, tags map[e4.TopicHash]e4.KeyTag, now time.Time) ([]outgoing, error) {
	t, err := getTopic(tx, m.Topic)
	if err != nil {
		return nil, err
	}
	key, err := s.topicKey(t)
	if err != nil {
		return nil, err
	}
	tag, holds := tags[t.Hash]
	delete(tags, t.Hash)
	if holds && tag == e4.TagOfKey(key) {
		return nil, tx.SetTopicAcked(c.ID, t.Name, t.KeyVersion, now)
	}
	if m.AckedVersion != 0 {
		// It lost or never had the current key, whatever it said before.
		if err := tx.SetTopicAcked(c.ID, t.Name, 0, now); err != nil {
			return nil, err
		}
	}
	// A key on its way is not sent twice: one still in the outbox leaves
	// after this report. One already sent is sent again: the report says
	// the device does not hold it, so it was lost (a broker restart), which
	// the repair would only notice after AwaitAck. One being published as
	// the report came may have been lost too, or not; the repair sends it
	// again after AwaitAck if it was (the dispatcher dates it sent from
	// before this report, so the device counts as heard from since).
	pending, err := tx.HasPendingCommand(c.ID, t.Name, command.SetTopicKey.String())
	if err != nil || pending {
		return nil, err
	}
	cmd, err := command.NewSetTopicKey(key, s.Suite().HashTopic(t.Name))
	if err != nil {
		return nil, err
	}
	return []outgoing{{client: c, cmd: cmd, target: t.Name}}, nil
}

// syncPubKeys queues a SetPubKey for each client linked to c whose current
// public key the device does not hold (unless one is pending). Public keys
// the device holds beyond its links are left alone: they may have been
// sent outside links (SendPubKey, the C2 signing key).
func (s *Service) syncPubKeys(tx store.Tx, ev *events, c store.Client, held []e4.HeldKey, now time.Time) error {
	tags := make(map[e4.ID]e4.KeyTag, len(held))
	for _, h := range held {
		tags[e4.ID(h.Hash)] = h.Tag
	}
	var after e4.ID
	for {
		sources, err := tx.LinkSources(c.ID, after, memberPage)
		if err != nil {
			return err
		}
		for _, id := range sources {
			src, err := getClient(tx, id)
			if err != nil {
				return err
			}
			if tag, ok := tags[id]; ok && tag == e4.TagOfKey(src.PublicKey) {
				if err := tx.SetLinkAcked(id, c.ID, src.PublicKey, now); err != nil {
					return err
				}
				continue
			}
			pending, err := tx.HasPendingCommand(c.ID, id.String(), command.SetPubKey.String())
			if err != nil {
				return err
			}
			if pending {
				continue
			}
			cmd, err := command.NewSetPubKey(src.PublicKey, src.ID)
			if err != nil {
				return err
			}
			if err := s.enqueue(tx, ev, outgoing{client: c, cmd: cmd, target: id.String()}); err != nil {
				return err
			}
		}
		if len(sources) < memberPage {
			return nil
		}
		after = sources[len(sources)-1]
	}
}
