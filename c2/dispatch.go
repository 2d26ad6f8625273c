package c2

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
)

// DispatchConfig tunes the outbox dispatcher and the repairs it makes
// from the state of devices. Zero fields take the defaults shown.
//
// A command counts as sent once the broker acknowledged it; a device's
// own acknowledgement (or its absence) only updates what C2 knows of the
// device, so a device that never acknowledges blocks nothing. What a
// device missed is repaired from that state: one command with the current
// key per item (see AwaitAck, ResendEvery and sync requests), never a
// copy of every command it missed.
type DispatchConfig struct {
	// Owner names this dispatcher in leases; default host name, process id
	// and a random suffix, unique per process.
	Owner string
	// InFlight is how many commands may be published at once (256).
	InFlight int
	// Batch is the most commands claimed from the store at once (512).
	Batch int
	// Lease is how long a claimed command is reserved for this dispatcher;
	// a dispatcher that dies holds its commands this long (15 s).
	Lease time.Duration
	// PublishTimeout bounds one publish, broker acknowledgement included
	// (10 s).
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before a failed publish is
	// retried; it doubles with each attempt (500 ms, 1 min).
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts is each command's retry budget: after that many failed
	// publishes it is marked failed and its client's queue moves on (30,
	// about 25 minutes with the default backoff). An error the transport
	// marks permanent (transport.IsPermanent) fails it at once. What a
	// failed command carried is repaired from the device's state. Negative
	// retries forever.
	MaxAttempts int
	// StallAfter is how many failed publishes in a row of one command
	// report its client stalled (EventClientStalled, ClientState) (5).
	StallAfter int
	// PollInterval is how often the outbox is checked for retries that
	// became due when nothing else woke the dispatcher (250 ms).
	PollInterval time.Duration
	// QoS is the delivery level of commands (transport.ExactlyOnce).
	QoS *transport.QoS
	// AwaitAck is how long C2 waits for a device that acknowledges
	// (e4.HandleCommandAck; e4transport.Protect devices do unless
	// e4transport.Options.NoAck) to acknowledge a topic key: a membership still
	// behind that long after its last command was sent gets one fresh
	// SetTopicKey with the current key. It never holds a queue: commands
	// are settled on the broker's acknowledgement. Devices that do not
	// acknowledge are left to ResendEvery and sync requests (1 min;
	// negative turns the repair off).
	AwaitAck time.Duration
	// RepairIdle bounds the repairs of a device not heard from since its
	// last command (offline, most likely): it is sent the current key
	// again at most once per RepairIdle, not every AwaitAck, so a long
	// outage does not fill the outbox; a device that reconnects sends a
	// sync request anyway (1 h).
	RepairIdle time.Duration
	// ResendEvery, when positive, sends devices that do not acknowledge
	// their topics' current keys again on this schedule (one SetTopicKey
	// per membership and period). Zero never resends.
	ResendEvery time.Duration
	// RepairInterval is how often the state is scanned for repairs,
	// overdue rotations and expired key changes (10 s).
	RepairInterval time.Duration
	// RepairBatch is the most items one scan repairs (1000).
	RepairBatch int
	// BehindAfter reports a topic whose members are still behind this long
	// after its rotation (EventDevicesBehind) (10 min).
	BehindAfter time.Duration
	// CommandLead is how far ahead of the clock the timestamps of one
	// client's commands may run: they grow strictly (ts = max(now, last +
	// 1 s)), and a command that would be further ahead waits (60 s).
	// Negative never dates a command in the future, for devices that
	// refuse it (one command per second and client).
	CommandLead time.Duration
	// ClientKeyGrace is how long, after a client-key change (SetIDKey), C2
	// keeps protecting commands under the previous key too for a device
	// that does not acknowledge; a device that acknowledges gets both until
	// it confirms the new key (24 h).
	ClientKeyGrace time.Duration
	// CatchUp limits the handling of sync requests.
	CatchUp CatchUpConfig
}

// CatchUpConfig limits how fast C2 answers sync requests, so a fleet that
// comes back at once does not overwhelm C2 or the broker.
type CatchUpConfig struct {
	// SyncRate and SyncBurst bound the sync requests handled per second
	// (200, burst 200).
	SyncRate  float64
	SyncBurst int
	// SyncQueue is how many sync requests may wait; more are dropped and
	// counted, and the device asks again at its next reconnect (10000).
	SyncQueue int
	// CommandRate and CommandBurst bound the commands per second that
	// catch-up and repairs enqueue (2000, burst 2000).
	CommandRate  float64
	CommandBurst int
}

// WithDefaults returns c with its zero fields set to the defaults the
// dispatcher uses, for documentation and tools.
func (c DispatchConfig) WithDefaults() DispatchConfig { return c.withDefaults() }

func (c DispatchConfig) withDefaults() DispatchConfig {
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	setDefault(&c.InFlight, 256)
	setDefault(&c.Batch, 512)
	setDefault(&c.Lease, 15*time.Second)
	setDefault(&c.PublishTimeout, 10*time.Second)
	setDefault(&c.MinBackoff, 500*time.Millisecond)
	setDefault(&c.MaxBackoff, time.Minute)
	setDefault(&c.PollInterval, 250*time.Millisecond)
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 30
	}
	setDefault(&c.StallAfter, 5)
	if c.AwaitAck == 0 {
		c.AwaitAck = time.Minute
	}
	setDefault(&c.RepairIdle, time.Hour)
	setDefault(&c.RepairInterval, 10*time.Second)
	setDefault(&c.RepairBatch, 1000)
	setDefault(&c.BehindAfter, 10*time.Minute)
	if c.CommandLead == 0 {
		c.CommandLead = 60 * time.Second
	}
	setDefault(&c.ClientKeyGrace, 24*time.Hour)
	if c.CatchUp.SyncRate <= 0 {
		c.CatchUp.SyncRate = 200
	}
	setDefault(&c.CatchUp.SyncBurst, 200)
	setDefault(&c.CatchUp.SyncQueue, 10000)
	if c.CatchUp.CommandRate <= 0 {
		c.CatchUp.CommandRate = 2000
	}
	setDefault(&c.CatchUp.CommandBurst, 2000)
	if c.QoS == nil {
		q := transport.ExactlyOnce
		c.QoS = &q
	}
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func defaultOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Dispatcher sends outbox entries over the transport, hears devices'
// acknowledgements and sync requests, and repairs what devices miss.
// Commands of one client go out one at a time in order; commands of
// different clients go out concurrently. A command is marked sent once the
// broker acknowledged it; a failed publish is retried with exponential
// backoff within its budget.
type Dispatcher struct {
	s    *Service
	cfg  DispatchConfig
	wake chan struct{}

	sent, retried, failed, held atomic.Uint64
	acked, unmatchedAcks        atomic.Uint64
	repaired, resent            atomic.Uint64
	inFlight                    atomic.Int64
	acks                        *awaiting
	catchUp                     *catchUp
	watch                       *topicWatch

	stalledMu sync.Mutex
	stalled   map[e4.ID]bool // clients this dispatcher reported stalled

	listening     chan struct{} // closed once Run subscribed
	listeningOnce sync.Once

	// claimFailing is set while claiming from the store fails, so the
	// failure is logged once; only Run's goroutine uses it.
	claimFailing bool
}

// DispatchStats counts what a dispatcher did since it was created.
type DispatchStats struct {
	// Sent counts commands the broker acknowledged; Retried failed
	// publishes tried again; Failed commands given up (or refused by their
	// device); Held commands postponed because their timestamp would run
	// too far ahead of the clock.
	Sent, Retried, Failed, Held uint64
	// Acked counts device acknowledgements matched to a command;
	// UnmatchedAcks those that matched none (late, duplicate or forged).
	Acked, UnmatchedAcks uint64
	// Repaired counts SetTopicKey commands queued for acknowledging
	// devices still behind after AwaitAck; Resent those queued on the
	// ResendEvery schedule.
	Repaired, Resent uint64
	InFlight         int64
	CatchUp          CatchUpStats
}

func newDispatcher(s *Service, cfg DispatchConfig) *Dispatcher {
	cfg = cfg.withDefaults()
	return &Dispatcher{
		s: s, cfg: cfg, wake: make(chan struct{}, 1), acks: newAwaiting(s.Suite()),
		catchUp: newCatchUp(cfg.CatchUp), watch: newTopicWatch(), stalled: make(map[e4.ID]bool),
		listening: make(chan struct{}),
	}
}

// Listening is closed once Run subscribed to acknowledgements and sync
// requests: what devices publish from then on is heard.
func (d *Dispatcher) Listening() <-chan struct{} { return d.listening }

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() DispatchStats {
	return DispatchStats{
		Sent: d.sent.Load(), Retried: d.retried.Load(), Failed: d.failed.Load(), Held: d.held.Load(),
		Acked: d.acked.Load(), UnmatchedAcks: d.unmatchedAcks.Load(),
		Repaired: d.repaired.Load(), Resent: d.resent.Load(),
		InFlight: d.inFlight.Load(), CatchUp: d.catchUp.stats(),
	}
}

// Wake makes the dispatcher look at the outbox now rather than at its
// next poll. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// outcome is the result of one publish.
type outcome struct {
	cmd       store.Command
	err       error
	permanent bool // retrying cannot help
	// claimed is when the command was claimed, just before its publish
	// began: the time recorded as sent (see markSent).
	claimed time.Time
}

// Run dispatches until ctx ends, then waits for publishes in flight and
// releases what it still holds. It returns nil after a clean stop.
func (d *Dispatcher) Run(ctx context.Context) error {
	var workers sync.WaitGroup
	defer workers.Wait()
	workCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	if err := d.listen(workCtx, &workers); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop, like one later
		}
		return err
	}
	workers.Go(func() { d.catchUp.run(workCtx, d) })
	workers.Go(func() { d.repairLoop(workCtx) })

	results := make(chan outcome, d.cfg.InFlight)
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	inFlight := 0
	for {
		if room := d.cfg.InFlight - inFlight; room > 0 {
			n, claimed := d.claimAndSend(ctx, sendCtx, room, results)
			inFlight += n
			if claimed == min(room, d.cfg.Batch) {
				continue // a full batch: there may be more right away
			}
		}
		select {
		case r := <-results:
			inFlight -= d.settle(ctx, r, results)
		case <-d.wake:
		case <-poll.C:
		case <-ctx.Done():
			d.drain(sendCtx, cancelSends, inFlight, results)
			return nil
		}
	}
}

// listen subscribes to acknowledgements and sync requests and starts
// their receivers.
func (d *Dispatcher) listen(ctx context.Context, workers *sync.WaitGroup) error {
	tr := d.s.cfg.Transport
	acks, err := tr.Subscribe(ctx, AckFilter)
	if err != nil {
		return fmt.Errorf("c2: subscribing to acknowledgements: %w", err)
	}
	syncs, err := tr.Subscribe(ctx, SyncFilter)
	if err != nil {
		_ = acks.Unsubscribe(context.WithoutCancel(ctx))
		return fmt.Errorf("c2: subscribing to sync requests: %w", err)
	}
	matched := make(chan matchedAck, ackQueue)
	workers.Go(func() {
		defer acks.Unsubscribe(context.WithoutCancel(ctx))
		d.listenAcks(ctx, acks, matched)
	})
	workers.Go(func() { d.recordAcks(context.WithoutCancel(ctx), matched) })
	workers.Go(func() {
		defer syncs.Unsubscribe(context.WithoutCancel(ctx))
		d.catchUp.listen(ctx, d, syncs)
	})
	d.listeningOnce.Do(func() { close(d.listening) })
	return nil
}

// claimAndSend claims up to room commands, dates them and starts
// publishing them; it returns how many it started and how many it claimed.
func (d *Dispatcher) claimAndSend(ctx, sendCtx context.Context, room int, results chan<- outcome) (started, claimed int) {
	now := d.s.now().UTC()
	cmds, err := d.s.st.ClaimCommands(ctx, d.cfg.Owner, now, d.cfg.Lease, min(room, d.cfg.Batch))
	if err != nil {
		if ctx.Err() == nil && !d.claimFailing {
			// Once per outage, not at every poll.
			d.claimFailing = true
			d.s.log.Warn("claiming outbox commands failed; trying again at every poll", "err", err)
		}
		return 0, 0
	}
	if d.claimFailing {
		d.claimFailing = false
		d.s.log.Info("claiming outbox commands works again")
	}
	if len(cmds) == 0 {
		return 0, 0
	}
	stamps, changes, err := d.prepare(ctx, cmds, now)
	if err != nil {
		if ctx.Err() == nil {
			d.s.log.Warn("dating outbox commands", "err", err)
		}
		d.postpone(ctx, cmds, now.Add(d.cfg.PollInterval))
		return 0, len(cmds)
	}
	for i, c := range cmds {
		if stamps[i] == 0 {
			d.held.Add(1)
			d.postpone(ctx, cmds[i:i+1], now.Add(time.Second))
			continue
		}
		d.inFlight.Add(1)
		started++
		change := changes[c.ClientID]
		ts := stamps[i]
		go func() {
			o := d.send(sendCtx, c, ts, change)
			o.claimed = now
			results <- o
		}()
	}
	return started, len(cmds)
}

// prepare reserves the timestamp of each command (0: held) and loads the
// client-key changes pending for their clients.
func (d *Dispatcher) prepare(ctx context.Context, cmds []store.Command, now time.Time) ([]int64, map[e4.ID]*keyChange, error) {
	clients := make([]e4.ID, len(cmds))
	for i, c := range cmds {
		clients[i] = c.ClientID
	}
	stamps, err := d.s.st.ReserveTimestamps(ctx, clients, now, d.cfg.CommandLead)
	if err != nil {
		return nil, nil, err
	}
	changes, err := d.s.keyChanges(ctx, clients, now)
	return stamps, changes, err
}

func (d *Dispatcher) postpone(ctx context.Context, cmds []store.Command, next time.Time) {
	for _, c := range cmds {
		if err := d.s.st.Postpone(ctx, d.cfg.Owner, c.ID, next); err != nil && !errors.Is(err, store.ErrLeaseLost) {
			d.s.log.Warn("postponing a command", "command", hex.EncodeToString(c.ID[:]), "err", err)
		}
	}
}

// send protects one command at timestamp ts and publishes it on the
// client's control topic: under the key the device holds or, during a
// client-key change, under each key it may hold.
func (d *Dispatcher) send(ctx context.Context, c store.Command, ts int64, change *keyChange) outcome {
	stored, cmd, err := d.s.openCommand(c)
	if err != nil {
		return outcome{cmd: c, err: err, permanent: true}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.PublishTimeout)
	defer cancel()
	for _, k := range change.keysFor(cmd, stored, d.s.now()) {
		protected, err := d.s.Suite().ProtectCommand(cmd, k.key, time.Unix(ts, 0))
		if err != nil {
			return outcome{cmd: c, err: err, permanent: true}
		}
		// Registered before publishing: the acknowledgement may come back
		// before Publish returns.
		d.acks.add(c.ClientID, newAwaited(c, cmd, k, protected, d.s.now()))
		err = d.s.cfg.Transport.Publish(ctx, e4.ControlTopic(c.ClientID), protected, transport.WithQoS(*d.cfg.QoS))
		if err != nil {
			return outcome{cmd: c, err: err}
		}
	}
	return outcome{cmd: c}
}

// settle records r and every other outcome already waiting, marking the
// successful ones sent in one store call; it returns how many it settled.
func (d *Dispatcher) settle(ctx context.Context, r outcome, results <-chan outcome) int {
	batch := []outcome{r}
	for len(batch) < d.cfg.Batch {
		select {
		case more := <-results:
			batch = append(batch, more)
			continue
		default:
		}
		break
	}
	var sent []store.CommandID
	var sentCmds []store.Command
	var claimed time.Time
	for _, o := range batch {
		d.inFlight.Add(-1)
		if o.err == nil {
			sent = append(sent, o.cmd.ID)
			sentCmds = append(sentCmds, o.cmd)
			if claimed.IsZero() || o.claimed.Before(claimed) {
				claimed = o.claimed
			}
			continue
		}
		d.retryOrFail(ctx, o)
	}
	if len(sent) > 0 {
		d.markSent(ctx, sent, sentCmds, claimed)
	}
	return len(batch)
}

// markSent records cmds sent at claimed, when the first of them was
// claimed, not when their publishes returned: a device heard from in
// between (its sync request answered while its command was on its way)
// may have missed the command, and the repair treats a device heard from
// since a command as one to repair after AwaitAck rather than RepairIdle.
func (d *Dispatcher) markSent(ctx context.Context, ids []store.CommandID, cmds []store.Command, claimed time.Time) {
	err := d.s.st.MarkSent(ctx, d.cfg.Owner, ids, claimed)
	if err != nil && !errors.Is(err, store.ErrLeaseLost) {
		// The broker has them; if the mark is lost they are sent again
		// after the lease, which devices tolerate (same key, newer time).
		d.s.log.Warn("marking commands sent", "count", len(ids), "err", err)
		return
	}
	d.sent.Add(uint64(len(ids)))
	now := d.s.now().UTC()
	events := make([]Event, len(cmds))
	for i, c := range cmds {
		events[i] = Event{Kind: EventCommandSent, Time: now, Client: &c.ClientID, Topic: topicOf(c), Detail: c.Kind}
	}
	d.unstall(ctx, cmds)
	d.s.emit(events...)
}

// unstall clears the stall of the clients in cmds that this dispatcher
// reported stalled: a command to them went through.
func (d *Dispatcher) unstall(ctx context.Context, cmds []store.Command) {
	d.stalledMu.Lock()
	var clients []e4.ID
	for _, c := range cmds {
		if d.stalled[c.ClientID] || c.Attempts >= d.cfg.StallAfter {
			clients = append(clients, c.ClientID)
			delete(d.stalled, c.ClientID)
		}
	}
	d.stalledMu.Unlock()
	if err := d.s.st.ClearStalled(ctx, clients); err != nil {
		d.s.log.Warn("clearing stalled clients", "err", err)
	}
}

func (d *Dispatcher) retryOrFail(ctx context.Context, o outcome) {
	attempts := o.cmd.Attempts + 1
	reason := o.err.Error()
	permanent := o.permanent || transport.IsPermanent(o.err)
	if permanent || (d.cfg.MaxAttempts > 0 && attempts >= d.cfg.MaxAttempts) {
		if err := d.s.st.Fail(ctx, d.cfg.Owner, o.cmd.ID, reason); err != nil {
			d.s.log.Warn("marking command failed", "command", hex.EncodeToString(o.cmd.ID[:]), "err", err)
			return
		}
		d.failed.Add(1)
		d.s.log.Error("command failed", "command", hex.EncodeToString(o.cmd.ID[:]), "client", o.cmd.ClientID.String(), "kind", o.cmd.Kind, "reason", reason)
		d.s.emit(Event{Kind: EventCommandFailed, Client: &o.cmd.ClientID, Topic: topicOf(o.cmd), Detail: reason})
		if permanent {
			d.stall(ctx, o.cmd, "a permanent failure: "+reason)
		}
		return
	}
	next := d.s.now().UTC().Add(d.backoff(attempts))
	if err := d.s.st.Retry(ctx, d.cfg.Owner, o.cmd.ID, next, reason); err != nil {
		d.s.log.Warn("scheduling command retry", "command", hex.EncodeToString(o.cmd.ID[:]), "err", err)
		return
	}
	d.retried.Add(1)
	d.s.log.Debug("publish failed; the command will be sent again", "command", hex.EncodeToString(o.cmd.ID[:]),
		"client", o.cmd.ClientID.String(), "kind", o.cmd.Kind, "attempt", attempts, "next", next, "err", o.err)
	if attempts == d.cfg.StallAfter {
		d.stall(ctx, o.cmd, fmt.Sprintf("%s failed %d times: %s", o.cmd.Kind, attempts, reason))
	}
}

// stall records that a client's queue is stuck and reports it.
func (d *Dispatcher) stall(ctx context.Context, c store.Command, reason string) {
	now := d.s.now().UTC()
	err := d.s.st.Update(ctx, func(tx store.Tx) error {
		ds, err := tx.GetDeviceState(c.ClientID)
		if err != nil {
			return err
		}
		ds.StalledReason, ds.StalledAt = reason, now
		return tx.PutDeviceState(ds)
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.s.log.Warn("recording a stalled client", "client", c.ClientID.String(), "err", err)
	}
	if err != nil {
		return
	}
	d.stalledMu.Lock()
	d.stalled[c.ClientID] = true
	d.stalledMu.Unlock()
	d.s.emit(Event{Kind: EventClientStalled, Client: &c.ClientID, Topic: topicOf(c), Detail: reason})
}

// backoff doubles from MinBackoff with each attempt, up to MaxBackoff,
// with up to 20% jitter so a fleet of retries does not hit the broker at
// the same instant.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	exp := math.Min(float64(attempts-1), 30)
	delay := time.Duration(float64(d.cfg.MinBackoff) * math.Pow(2, exp))
	delay = min(delay, d.cfg.MaxBackoff)
	return delay + time.Duration(mrand.Int64N(int64(delay)/5+1))
}

// drain waits up to one publish timeout for publishes in flight, settles
// them and then stops the others; unsettled commands are released when
// their lease expires.
func (d *Dispatcher) drain(sendCtx context.Context, cancel context.CancelFunc, inFlight int, results <-chan outcome) {
	deadline := time.NewTimer(d.cfg.PublishTimeout)
	defer deadline.Stop()
	settleCtx, stop := context.WithTimeout(context.WithoutCancel(sendCtx), 5*time.Second)
	defer stop()
	for inFlight > 0 {
		select {
		case r := <-results:
			inFlight -= d.settle(settleCtx, r, results)
		case <-deadline.C:
			cancel()
			deadline.Reset(time.Hour)
		}
	}
}

// topicOf returns the topic a command is about, when it is about one.
func topicOf(c store.Command) string {
	switch c.Kind {
	case command.SetTopicKey.String(), command.RemoveTopic.String():
		return c.Target
	}
	return ""
}
