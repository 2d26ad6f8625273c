package e4transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
)

// Options sets the policies of a Protected transport. The zero value
// is strict: nothing unprotected is ever published or delivered.
type Options struct {
	// OnDrop is called for every received message that is not delivered:
	// one on a topic the client holds no key for, or one that fails to
	// unprotect (tampered, replayed, too old...). It runs on the receiving
	// goroutine, so it must not block for long. Dropped() counts them too.
	OnDrop func(topic string, err error)

	// OnCommand is called after each command received on the client's
	// control topic, with the error if it was refused.
	OnCommand func(cmd command.Code, err error)

	// DeliverUnkeyed delivers messages on topics the client holds no key
	// for unchanged, as plaintext, for deployments where some topics are
	// deliberately unprotected. Off by default.
	DeliverUnkeyed bool

	// PublishUnkeyed publishes payloads on topics the client holds no key
	// for unchanged. Off by default: such a Publish fails with an error
	// wrapping e4.ErrTopicKeyNotFound.
	PublishUnkeyed bool

	// AwaitKey is how long a received message that fails to unprotect for
	// want of the right key (no key for its topic or its sender, or
	// authentication failed) is held for a command from C2 before it is
	// dropped. During a key rotation a sender that already has the new key
	// may be heard before the command bringing it arrives here; holding the
	// message keeps it instead of losing it. Held messages are set aside:
	// the messages after them are delivered at once, and the held ones are
	// tried again after each command and delivered when one unprotects,
	// so a held message may be delivered after later ones. A forged
	// message is held like any other and dropped after AwaitKey, without
	// delaying anything. Zero drops at once.
	AwaitKey time.Duration

	// NoSync stops the sync requests. By default the device publishes a
	// sync request (e4.Client.SyncRequest: what keys it holds) on
	// e4.SyncTopic once it has subscribed to its control topic, and again
	// after every reconnection of the wrapped transport (when it
	// implements transport.ConnectionNotifier), once its control topic is
	// subscribed again, so that C2 sends what the device missed and the
	// answer cannot be missed.
	NoSync bool

	// OnSync is called after each attempt to publish a sync request, with
	// the error if it failed (it is tried again after the next
	// reconnection). It runs on the goroutine that sends them.
	OnSync func(err error)

	// AwaitKeyMaxHeld and AwaitKeyMaxBytes bound the messages one
	// subscription holds for a key, in number and in payload bytes
	// (defaults DefaultAwaitKeyMaxHeld and DefaultAwaitKeyMaxBytes). A
	// message that does not fit is dropped at once, with an error
	// wrapping ErrAwaitKeyFull and the reason it could not be read.
	AwaitKeyMaxHeld  int
	AwaitKeyMaxBytes int

	// NoAck stops the acknowledgements. By default, after each authentic
	// command (applied, or refused as stale or replayed), the device
	// publishes a protected acknowledgement on e4.AckTopic (see
	// e4.HandleCommandAck), so a C2 that waits for acknowledgements knows
	// this device holds its keys. Forged commands are never acknowledged.
	NoAck bool
}

// Defaults of Options.
const (
	DefaultAwaitKeyMaxHeld  = 256
	DefaultAwaitKeyMaxBytes = 4 << 20
)

// ErrAwaitKeyFull reports a message dropped at once because its
// subscription already holds as many messages awaiting a key as
// Options allows.
var ErrAwaitKeyFull = errors.New("e4transport: too many messages await a key")

// ackTimeout bounds the publish of one acknowledgement; a lost one only
// makes C2 send the command again.
const ackTimeout = 10 * time.Second

// Protected is a transport.Transport that protects everything it
// publishes and unprotects everything it receives with an E4 client, and
// applies the commands C2 sends to the client's control topic. Create it
// with Protect. It is safe for concurrent use.
type Protected struct {
	inner  transport.Transport
	client *e4.Client
	opts   Options

	control  transport.Subscription
	stop     context.CancelFunc
	done     chan struct{}
	closed   atomic.Bool
	closeErr error
	once     sync.Once

	// syncWanted asks the sync goroutine for a sync request; it holds at
	// most one, so requests asked for while one is sent coalesce.
	syncWanted chan struct{}
	syncDone   chan struct{}
	stopEvents func() // unregisters from the inner transport's events
	syncs      atomic.Uint64

	dropped  atomic.Uint64
	commands atomic.Uint64

	keysMu      sync.Mutex
	keysChanged context.Context // cancelled and replaced after each applied command
	keysSignal  context.CancelFunc
	keysGen     uint64 // counts applied commands

	// noBatch makes subscriptions unprotect one message at a time, the
	// reference the batch path is tested against.
	noBatch bool
	batched atomic.Uint64 // messages unprotected in batches, for tests
}

// Protect wraps t with the E4 client c. It subscribes to the client's
// control topic before returning, so commands sent afterwards are applied.
// The Protected transport owns t: closing it closes t. opts may be nil.
func Protect(ctx context.Context, t transport.Transport, c *e4.Client, opts *Options) (*Protected, error) {
	if t == nil || c == nil {
		return nil, errors.New("e4transport: Protect needs a transport and an E4 client")
	}
	p := &Protected{inner: t, client: c, done: make(chan struct{})}
	p.keysChanged, p.keysSignal = context.WithCancel(context.Background())
	if opts != nil {
		p.opts = *opts
	}
	if p.opts.AwaitKeyMaxHeld <= 0 {
		p.opts.AwaitKeyMaxHeld = DefaultAwaitKeyMaxHeld
	}
	if p.opts.AwaitKeyMaxBytes <= 0 {
		p.opts.AwaitKeyMaxBytes = DefaultAwaitKeyMaxBytes
	}
	p.syncWanted, p.syncDone = make(chan struct{}, 1), make(chan struct{})
	p.stopEvents = func() {}
	if n, ok := t.(transport.ConnectionNotifier); ok && !p.opts.NoSync {
		// Registered before subscribing, so that no reconnection after
		// the subscription is missed; an event before it only asks for a
		// sync request that is sent anyway.
		p.stopEvents = n.NotifyConnection(p.connectionChanged)
	}
	control, err := t.Subscribe(ctx, c.ControlTopic())
	if err != nil {
		p.stopEvents()
		return nil, fmt.Errorf("e4transport: subscribing to the control topic %s: %w", c.ControlTopic(), err)
	}
	p.control = control
	var runCtx context.Context
	runCtx, p.stop = context.WithCancel(context.Background())
	go p.applyCommands(runCtx)
	if p.opts.NoSync {
		close(p.syncDone)
	} else {
		p.requestSync()
		go p.sendSyncRequests(runCtx)
	}
	return p, nil
}

// syncTimeout bounds the publish of one sync request; a lost one is sent
// again after the next reconnection.
const syncTimeout = 30 * time.Second

// connectionChanged asks for a sync request after each (re)connection of
// the inner transport, whose subscriptions, the control topic's included,
// are live again by then.
func (p *Protected) connectionChanged(ev transport.ConnectionEvent) {
	if ev.State == transport.Connected {
		p.requestSync()
	}
}

// requestSync asks the sync goroutine for a sync request, without waiting.
func (p *Protected) requestSync() {
	select {
	case p.syncWanted <- struct{}{}:
	default: // one is already asked for
	}
}

// sendSyncRequests publishes a sync request each time one is asked for,
// until Close.
func (p *Protected) sendSyncRequests(ctx context.Context) {
	defer close(p.syncDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.syncWanted:
		}
		err := p.publishSyncRequest(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			p.syncs.Add(1)
		}
		if p.opts.OnSync != nil {
			p.opts.OnSync(err)
		}
	}
}

// publishSyncRequest tells C2 what the client holds.
func (p *Protected) publishSyncRequest(ctx context.Context) error {
	req, err := p.client.SyncRequest()
	if err != nil {
		return fmt.Errorf("e4transport: building the sync request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	topic := e4.SyncTopic(p.client.ID())
	if err := p.inner.Publish(ctx, topic, req, transport.WithQoS(transport.AtLeastOnce)); err != nil {
		return fmt.Errorf("e4transport: publishing the sync request on %s: %w", topic, err)
	}
	return nil
}

// SyncRequests returns how many sync requests were published.
func (p *Protected) SyncRequests() uint64 { return p.syncs.Load() }

// NotifyConnection implements transport.ConnectionNotifier by passing on
// the events of the wrapped transport; it reports nothing when that one
// does not implement transport.ConnectionNotifier.
func (p *Protected) NotifyConnection(f func(transport.ConnectionEvent)) (stop func()) {
	if n, ok := p.inner.(transport.ConnectionNotifier); ok {
		return n.NotifyConnection(f)
	}
	return func() {}
}

// Client returns the E4 client.
func (p *Protected) Client() *e4.Client { return p.client }

// Dropped returns how many received messages were not delivered.
func (p *Protected) Dropped() uint64 { return p.dropped.Load() }

// Commands returns how many commands from C2 were applied successfully.
func (p *Protected) Commands() uint64 { return p.commands.Load() }

// applyCommands receives the control topic until Close.
func (p *Protected) applyCommands(ctx context.Context) {
	defer close(p.done)
	for {
		msg, err := p.control.Receive(ctx)
		if err != nil {
			return // closed, or Close cancelled ctx
		}
		cmd, err := p.handleCommand(ctx, msg.Payload)
		if err == nil {
			p.commands.Add(1)
			p.signalKeysChanged()
		}
		if p.opts.OnCommand != nil {
			p.opts.OnCommand(cmd, err)
		}
	}
}

// Publish protects payload for topic and publishes it. It fails with an
// error wrapping e4.ErrTopicKeyNotFound when the client has no key for the
// topic (unless PublishUnkeyed is set).
func (p *Protected) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	if p.closed.Load() {
		return transport.ErrClosed
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return err
	}
	// The Transport contract lets Publish's caller reuse the payload once
	// it returns, so the protected copy comes from a pool.
	buf := getBuffer()
	defer putBuffer(buf)
	wire, err := p.client.Protect((*buf)[:0], payload, topic)
	*buf = wire
	if errors.Is(err, e4.ErrTopicKeyNotFound) && p.opts.PublishUnkeyed {
		wire, err = payload, nil
	}
	if err != nil {
		return fmt.Errorf("e4transport: protecting for %s: %w", topic, err)
	}
	return p.inner.Publish(ctx, topic, wire, opts...)
}

// buffers holds scratch space for protecting and unprotecting: without
// it, every message costs two allocations of its size, and at high rates
// the garbage collector's work outweighs the cryptography's.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBuffer keeps a rare huge message from pinning its buffer.
const maxPooledBuffer = 64 << 10

func getBuffer() *[]byte { return buffers.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	buffers.Put(b)
}

// Subscribe subscribes to filter; Receive on the result returns plaintext.
func (p *Protected) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	if p.closed.Load() {
		return nil, transport.ErrClosed
	}
	sub, err := p.inner.Subscribe(ctx, filter)
	if err != nil {
		return nil, err
	}
	return &protectedSubscription{inner: sub, p: p, noBatch: p.noBatch}, nil
}

// Close stops applying commands and closes the wrapped transport.
func (p *Protected) Close() error {
	p.once.Do(func() {
		p.closed.Store(true)
		p.stopEvents()
		p.stop()
		p.closeErr = p.inner.Close()
		<-p.done
		<-p.syncDone
	})
	return p.closeErr
}

// handleCommand applies one command and acknowledges it when asked to.
func (p *Protected) handleCommand(ctx context.Context, protected []byte) (command.Code, error) {
	if p.opts.NoAck {
		return p.client.HandleCommand(protected)
	}
	cmd, ack, err := p.client.HandleCommandAck(protected)
	if ack != nil {
		ctx, cancel := context.WithTimeout(ctx, ackTimeout)
		defer cancel()
		// Best effort: without the acknowledgement C2 sends the command
		// again later, and it is applied again harmlessly.
		_ = p.inner.Publish(ctx, e4.AckTopic(p.client.ID()), ack, transport.WithQoS(transport.AtLeastOnce))
	}
	return cmd, err
}

// signalKeysChanged wakes the subscriptions waiting for a key.
func (p *Protected) signalKeysChanged() {
	p.keysMu.Lock()
	defer p.keysMu.Unlock()
	p.keysSignal()
	p.keysChanged, p.keysSignal = context.WithCancel(context.Background())
	p.keysGen++
}

// keyGeneration returns the count of applied commands and a context
// cancelled when the next one is applied.
func (p *Protected) keyGeneration() (uint64, context.Context) {
	p.keysMu.Lock()
	defer p.keysMu.Unlock()
	return p.keysGen, p.keysChanged
}

// drop counts and reports an undelivered message.
func (p *Protected) drop(topic string, err error) {
	p.dropped.Add(1)
	if p.opts.OnDrop != nil {
		p.opts.OnDrop(topic, err)
	}
}

// IsProtocolTopic reports whether topic is c's control topic or a topic
// below it (its acknowledgements and sync requests): E4 protocol traffic,
// which a wide filter such as "#" matches but which is not the
// application's. Protected applies the commands itself; receivers of their
// own (see mqtt.Handler) skip these topics.
func IsProtocolTopic(c *e4.Client, topic string) bool {
	control := c.ControlTopic()
	rest, found := strings.CutPrefix(topic, control)
	return found && (rest == "" || rest[0] == '/')
}
