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
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// DispatchConfig tunes the outbox dispatcher. Zero fields take the
// defaults shown.
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
	// MaxAttempts marks a command failed after that many failed publishes;
	// zero retries forever, so a long broker outage loses nothing.
	MaxAttempts int
	// PollInterval is how often the outbox is checked for retries that
	// became due when nothing else woke the dispatcher (250 ms).
	PollInterval time.Duration
	// QoS is the delivery level of commands (transport.ExactlyOnce).
	QoS *transport.QoS
	// AwaitAck, when set, makes a command count as delivered only once the
	// device acknowledged it (e4.HandleCommandAck, transport.ProtectOptions
	// AckCommands); without an acknowledgement within AwaitAck it is sent
	// again. This covers what a broker acknowledgement cannot: a broker
	// restart that lost its queues, a device that was not subscribed. Zero
	// trusts the broker's acknowledgement. Only for fleets whose devices all
	// acknowledge: the others would be sent their commands forever.
	AwaitAck time.Duration
}

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

// Dispatcher sends outbox entries over the transport. Commands of one
// client go out one at a time in order; commands of different clients go
// out concurrently. A command is marked sent only once the broker
// acknowledged it; a failed publish is retried with exponential backoff.
type Dispatcher struct {
	s    *Service
	cfg  DispatchConfig
	wake chan struct{}

	sent, retried, failed atomic.Uint64
	acked, unmatchedAcks  atomic.Uint64
	inFlight              atomic.Int64
	acks                  *awaiting
}

// DispatchStats counts what a dispatcher did since it was created.
type DispatchStats struct {
	// Sent counts commands the broker acknowledged.
	Sent, Retried, Failed uint64
	// Acked counts device acknowledgements matched to a command (AwaitAck);
	// UnmatchedAcks those that matched none (late, duplicate or forged).
	Acked, UnmatchedAcks uint64
	InFlight             int64
}

func newDispatcher(s *Service, cfg DispatchConfig) *Dispatcher {
	return &Dispatcher{s: s, cfg: cfg.withDefaults(), wake: make(chan struct{}, 1), acks: newAwaiting(s.Suite())}
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() DispatchStats {
	return DispatchStats{
		Sent: d.sent.Load(), Retried: d.retried.Load(), Failed: d.failed.Load(),
		Acked: d.acked.Load(), UnmatchedAcks: d.unmatchedAcks.Load(), InFlight: d.inFlight.Load(),
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
}

// Run dispatches until ctx ends, then waits for publishes in flight and
// releases what it still holds. It returns nil after a clean stop.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.cfg.AwaitAck > 0 {
		sub, err := d.s.cfg.Transport.Subscribe(ctx, AckFilter)
		if err != nil {
			return fmt.Errorf("c2: subscribing to acknowledgements: %w", err)
		}
		defer sub.Unsubscribe(context.WithoutCancel(ctx))
		go d.listenAcks(ctx, sub)
	}
	results := make(chan outcome, d.cfg.InFlight)
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	inFlight := 0
	for {
		if room := d.cfg.InFlight - inFlight; room > 0 {
			n := d.claimAndSend(ctx, sendCtx, room, results)
			inFlight += n
			if n == min(room, d.cfg.Batch) {
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

// claimAndSend claims up to room commands and starts publishing them; it
// returns how many it started.
func (d *Dispatcher) claimAndSend(ctx, sendCtx context.Context, room int, results chan<- outcome) int {
	cmds, err := d.s.st.ClaimCommands(ctx, d.cfg.Owner, d.s.now().UTC(), d.cfg.Lease, min(room, d.cfg.Batch))
	if err != nil {
		if ctx.Err() == nil {
			d.s.log.Warn("claiming outbox commands", "err", err)
		}
		return 0
	}
	for _, c := range cmds {
		d.inFlight.Add(1)
		go func() { results <- d.send(sendCtx, c) }()
	}
	return len(cmds)
}

// send protects one command with a fresh timestamp and publishes it on
// the client's control topic.
func (d *Dispatcher) send(ctx context.Context, c store.Command) outcome {
	key, cmd, err := d.s.openCommand(c)
	if err != nil {
		return outcome{cmd: c, err: err, permanent: true}
	}
	protected, err := d.s.Suite().ProtectCommand(cmd, key, d.s.now())
	if err != nil {
		return outcome{cmd: c, err: err, permanent: true}
	}
	if d.cfg.AwaitAck > 0 {
		// Registered before publishing: the acknowledgement may come back
		// before Publish returns.
		d.acks.add(c.ClientID, awaitedCommand{id: c.ID, key: key, digest: e4.CommandDigest(protected)})
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.PublishTimeout)
	defer cancel()
	err = d.s.cfg.Transport.Publish(ctx, e4.ControlTopic(c.ClientID), protected, transport.WithQoS(*d.cfg.QoS))
	return outcome{cmd: c, err: err}
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
	for _, o := range batch {
		d.inFlight.Add(-1)
		if o.err == nil && d.cfg.AwaitAck > 0 {
			d.awaitAck(ctx, o.cmd)
			continue
		}
		if o.err == nil {
			sent = append(sent, o.cmd.ID)
			sentCmds = append(sentCmds, o.cmd)
			continue
		}
		d.retryOrFail(ctx, o)
	}
	if len(sent) > 0 {
		d.markSent(ctx, sent, sentCmds)
	}
	return len(batch)
}

func (d *Dispatcher) markSent(ctx context.Context, ids []store.CommandID, cmds []store.Command) {
	err := d.s.st.MarkSent(ctx, d.cfg.Owner, ids, d.s.now().UTC())
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
	d.s.emit(events...)
}

func (d *Dispatcher) retryOrFail(ctx context.Context, o outcome) {
	attempts := o.cmd.Attempts + 1
	reason := o.err.Error()
	if o.permanent || (d.cfg.MaxAttempts > 0 && attempts >= d.cfg.MaxAttempts) {
		if err := d.s.st.Fail(ctx, d.cfg.Owner, o.cmd.ID, reason); err != nil {
			d.s.log.Warn("marking command failed", "command", hex.EncodeToString(o.cmd.ID[:]), "err", err)
			return
		}
		d.failed.Add(1)
		d.s.log.Error("command failed", "command", hex.EncodeToString(o.cmd.ID[:]), "client", o.cmd.ClientID.String(), "kind", o.cmd.Kind, "reason", reason)
		d.s.emit(Event{Kind: EventCommandFailed, Client: &o.cmd.ClientID, Topic: topicOf(o.cmd), Detail: reason})
		return
	}
	next := d.s.now().UTC().Add(d.backoff(attempts))
	if err := d.s.st.Retry(ctx, d.cfg.Owner, o.cmd.ID, next, reason); err != nil {
		d.s.log.Warn("scheduling command retry", "command", hex.EncodeToString(o.cmd.ID[:]), "err", err)
		return
	}
	d.retried.Add(1)
}

// awaitAck leaves a command the broker took pending until the device
// acknowledges it, or AwaitAck passes and it is sent again.
func (d *Dispatcher) awaitAck(ctx context.Context, c store.Command) {
	d.sent.Add(1)
	next := d.s.now().UTC().Add(d.cfg.AwaitAck)
	err := d.s.st.Retry(ctx, d.cfg.Owner, c.ID, next, awaitingAckReason)
	if err != nil && !errors.Is(err, store.ErrLeaseLost) { // lost: already acknowledged
		d.s.log.Warn("scheduling command resend", "command", hex.EncodeToString(c.ID[:]), "err", err)
	}
}

// awaitingAckReason is the LastError of a command sent and waiting for
// its device's acknowledgement.
const awaitingAckReason = "sent; waiting for the device's acknowledgement"

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
	case e4.SetTopicKey.String(), e4.RemoveTopic.String():
		return c.Target
	}
	return ""
}
