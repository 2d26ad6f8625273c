// Package mqtt is the MQTT 3.1.1 adapter of package transport, built on
// github.com/eclipse/paho.mqtt.golang.
//
// Dial opens a connection of its own from a Config; FromClient wraps a paho
// client the application has already configured and connected, and Protect
// adds E4 to such a client in one call:
//
//	p, err := mqtt.Protect(ctx, pahoClient, e4Client, nil, nil)
//	err = p.Publish(ctx, "sensors/room1/temp", []byte("21.5"))
//
// An application that subscribes with paho callbacks keeps them and wraps
// each handler with Handler, which hands it plaintext. Such a client must
// be built with ResubscribeOnConnect when it reconnects by itself
// (FromClient refuses it otherwise, with ErrNoResubscribe).
//
// Topics: canonical topic names are MQTT topic names, unchanged (levels
// separated by "/", "+" and "#" as in MQTT), so a topic published here and
// one seen by any other MQTT client are the same string.
//
// Delivery: a Transport subscribes at the broker with QoS 2, so messages
// arrive with the QoS they were published with. Its broker subscriptions
// never overlap (see the comment in filters.go): overlapping filters of
// one connection are joined at the broker into one covering filter and
// messages are matched locally, so each Subscription receives each message
// once whatever the broker does with overlapping subscriptions. A
// Subscription buffers up to Config.QueueSize messages and
// Config.QueueBytes bytes; see Subscription for what happens when its
// consumer stops reading. A received message larger than
// Config.MaxMessageSize (8 MiB by default) is refused as it arrives, before
// its payload is read into memory, and counted (Transport.Oversized,
// Subscription.Dropped).
//
// Publishing: at most Config.MaxInflight QoS 1 and 2 messages (default
// 20) are in flight on a connection at a time; more concurrent Publish
// calls wait their turn. Brokers bound what a client may leave
// unacknowledged, and Mosquitto 2.0 drops, while acknowledging it, a
// message from an MQTT 3.1.1 client beyond that bound.
//
// Reconnection: after a lost connection paho reconnects by itself, and the
// Transport subscribes again to everything live, on every reconnect, so
// subscriptions survive a broker restart even with a clean session or a
// broker that lost its persistent sessions (the broker then sends matching
// retained messages again). While disconnected, Publish waits for the
// connection to come back or ctx to end; a QoS 0 message published just as
// the connection drops may be lost, as QoS 0 allows.
package mqtt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/internal/notify"
)

// Defaults of Config.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultMaxReconnectInterval = 10 * time.Second
)

// Inbound size limits of Config.
const (
	// DefaultMaxMessageSize is the default of Config.MaxMessageSize.
	DefaultMaxMessageSize = 8 << 20
	// DefaultQueueBytes is the default of Config.QueueBytes.
	DefaultQueueBytes = 64 << 20
)

// maxPacketBody is the largest "remaining length" of an MQTT packet.
const maxPacketBody = 268_435_455

// subscribeQoS is the QoS of every broker subscription: the highest, so
// that messages keep the QoS their publisher chose.
const subscribeQoS = byte(transport.ExactlyOnce)

// pollInterval is how often a call waiting for the connection checks it.
const pollInterval = 10 * time.Millisecond

// backlogLimit bounds the messages a persistent session receives before
// the application subscribes again (see Config.PersistentSession).
const backlogLimit = 10000

// closeTimeout bounds the broker round trips of Close.
const closeTimeout = 5 * time.Second

// Errors of the adapter.
var (
	// ErrNotAuthorized reports a broker that refused the credentials
	// (CONNACK return code 4 or 5).
	ErrNotAuthorized = errors.New("mqtt: broker refused the connection: bad username or password, or not authorized")

	// ErrSubscriptionRefused reports a SUBACK with the failure code
	// (0x80), typically an ACL denial.
	ErrSubscriptionRefused = errors.New("mqtt: broker refused the subscription")
)

// Config configures Dial and FromClient. Only Brokers is required, by
// Dial; FromClient takes DefaultQoS, QueueSize, QueueBytes, MaxMessageSize
// and MaxInflight from it and ignores the rest, which is about the
// connection the application made.
type Config struct {
	// Brokers are the broker URLs, tried in order on every (re)connect:
	// "tcp://host:1883" (or "mqtt://"), "ssl://host:8883" (or "tls://",
	// "mqtts://"), "ws://host/path", "wss://host/path".
	Brokers []string
	// ClientID identifies the session; a random "e4kit-..." id when empty.
	// Set it with PersistentSession.
	ClientID string
	// Username and Password are sent in CONNECT when Username is set.
	Username string
	Password string
	// TLS configures ssl://, tls:// and wss:// connections: RootCAs for a
	// private CA, Certificates for a client certificate (mutual TLS).
	TLS *tls.Config
	// PersistentSession connects with CleanSession false: the broker keeps
	// the subscriptions and queues QoS 1 and 2 messages while the client is
	// away. Messages it delivers on connect, before the application
	// subscribes again, are kept (up to 10000) and handed to the first new
	// subscription whose filter matches them. Close does not unsubscribe.
	PersistentSession bool
	// KeepAlive is the MQTT keep-alive interval (default 30 s).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt (default 10 s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the pause between reconnection attempts
	// (default 10 s).
	MaxReconnectInterval time.Duration
	// DefaultQoS is the QoS of a Publish without transport.WithQoS;
	// nil means transport.AtLeastOnce, as in package transport.
	DefaultQoS *transport.QoS
	// QueueSize is the buffer of each subscription, in messages (default
	// DefaultQueueSize).
	QueueSize int
	// MaxMessageSize bounds the payload of a received message (default
	// DefaultMaxMessageSize); 0 takes the default, a negative value
	// removes the bound. A larger PUBLISH is refused as it arrives, before
	// its payload is buffered (MQTT gives its length first): its payload
	// is skipped on the wire, the broker gets its acknowledgement as
	// usual, and it is counted by Oversized and by the Dropped count of
	// each subscription it matched. On a FromClient transport paho reads
	// the message whole first, and the adapter drops it after.
	MaxMessageSize int
	// QueueBytes bounds the payload bytes each subscription buffers
	// (default DefaultQueueBytes), beside QueueSize: a message that would
	// go over it is dropped and counted like one over QueueSize.
	QueueBytes int
	// ConnectRetry makes Dial return at once, without waiting for the
	// broker: the Transport connects in the background, retrying with
	// backoff (doubling up to MaxReconnectInterval) until the broker
	// answers or Close, and Publish and Subscribe wait for it meanwhile.
	// Without it Dial fails when the first attempt fails. Retries go on
	// whatever the reason, refused credentials included; the first failure
	// is reported as a transport.Disconnected event with its error.
	ConnectRetry bool
	// MaxInflight bounds the QoS 1 and 2 messages published and not yet
	// acknowledged by the broker (default DefaultMaxInflight, 20); further
	// Publish calls wait for one to complete. It must not exceed what the
	// broker accepts from one client: Mosquitto's max_inflight_messages
	// (default 20), EMQX's max_awaiting_rel (default 100). Beyond it
	// Mosquitto 2.0 acknowledges MQTT 3.1.1 messages as usual but drops
	// them.
	MaxInflight int
}

// Transport is a transport.Transport over one MQTT connection. It is safe
// for concurrent use.
type Transport struct {
	client      paho.Client
	owned       bool // made by Dial: Close disconnects it
	defaultQoS  transport.QoS
	queueSize   int
	queueBytes  int
	maxMessage  int // largest payload delivered; 0: no limit
	inflight    inflightWindow
	keepBacklog bool // persistent session, see Config.PersistentSession

	// ops admits one change of the broker subscriptions at a time.
	ops chan struct{}
	// done is closed by Close.
	done chan struct{}
	// connecting is set while a ConnectRetry Dial waits for its first
	// connection.
	connecting atomic.Bool
	// listeners receive the connection events.
	listeners notify.Listeners
	// oversized holds the topics of the messages refused for their size
	// whose empty replacement paho has yet to deliver; refused counts them.
	oversized oversizedQueue
	refused   atomic.Uint64

	mu      sync.Mutex // guards what follows
	closed  bool
	subs    map[*Subscription]struct{}
	remote  []string // broker subscriptions in use; they never overlap
	stale   []string // broker subscriptions to remove
	backlog []*transport.Message
}

var (
	_ transport.Transport          = (*Transport)(nil)
	_ transport.ConnectionNotifier = (*Transport)(nil)
)

func newTransport(defaultQoS transport.QoS, queueSize, maxInflight int) *Transport {
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}
	return &Transport{
		defaultQoS: defaultQoS,
		queueSize:  queueSize,
		queueBytes: DefaultQueueBytes,
		maxMessage: DefaultMaxMessageSize,
		inflight:   newInflightWindow(maxInflight),
		ops:        make(chan struct{}, 1),
		done:       make(chan struct{}),
		subs:       make(map[*Subscription]struct{}),
	}
}

// newConfiguredTransport makes a Transport with the settings of cfg that
// Dial and FromClient share: DefaultQoS, QueueSize, QueueBytes,
// MaxMessageSize and MaxInflight.
func newConfiguredTransport(cfg *Config) (*Transport, error) {
	qos := transport.AtLeastOnce
	if cfg.DefaultQoS != nil {
		qos = *cfg.DefaultQoS
	}
	if qos > transport.ExactlyOnce {
		return nil, fmt.Errorf("mqtt: default QoS %d is not 0, 1 or 2", qos)
	}
	t := newTransport(qos, cfg.QueueSize, cfg.MaxInflight)
	t.setLimits(cfg.MaxMessageSize, cfg.QueueBytes)
	return t, nil
}

// Dial connects to the first broker of cfg.Brokers that accepts, within
// ctx. Credentials refused by the broker give an error wrapping
// ErrNotAuthorized.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mqtt: connecting to %v: %w", cfg.Brokers, err)
	}
	t, err := newConfiguredTransport(&cfg)
	if err != nil {
		return nil, err
	}
	opts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	t.owned, t.keepBacklog = true, cfg.PersistentSession
	if t.maxMessage > 0 {
		opts.SetCustomOpenConnectionFn(t.openLimitedConnection)
	}
	var connects atomic.Int64
	opts.SetOnConnectHandler(func(paho.Client) {
		// The first connection starts with nothing subscribed, and paho
		// calls this in a goroutine of its own, possibly after a first
		// Subscribe: subscribing again would make the broker send the
		// retained messages a second time.
		if connects.Add(1) > 1 {
			t.resubscribe()
		}
		t.listeners.Emit(transport.ConnectionEvent{State: transport.Connected})
	})
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: err})
	})
	opts.SetDefaultPublishHandler(t.unrouted)
	t.client = paho.NewClient(opts)
	if cfg.ConnectRetry {
		t.connecting.Store(true)
		go t.connectRetrying(cfg.Brokers, orDefault(cfg.MaxReconnectInterval, DefaultMaxReconnectInterval))
		return t, nil
	}
	if err := connect(ctx, t.client, cfg.Brokers); err != nil {
		return nil, err
	}
	return t, nil
}

// firstRetryInterval is the first pause of ConnectRetry.
const firstRetryInterval = 100 * time.Millisecond

// connectRetrying makes the first connection of a ConnectRetry Dial,
// retrying with backoff until it succeeds or Close.
func (t *Transport) connectRetrying(brokers []string, maxInterval time.Duration) {
	defer t.connecting.Store(false)
	delay := firstRetryInterval
	for failures := 0; ; failures++ {
		tok := t.client.Connect()
		select {
		case <-tok.Done():
		case <-t.done:
			go func() { <-tok.Done(); t.client.Disconnect(0) }()
			return
		}
		err := tok.Error()
		if err == nil {
			select {
			case <-t.done: // closed while connecting
				t.client.Disconnect(0)
			default:
			}
			return
		}
		if failures == 0 {
			t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: fmt.Errorf("mqtt: connecting to %v: %w", brokers, err)})
		}
		select {
		case <-time.After(delay):
		case <-t.done:
			return
		}
		delay = min(2*delay, maxInterval)
	}
}

// setLimits applies Config.MaxMessageSize and Config.QueueBytes.
func (t *Transport) setLimits(maxMessage, queueBytes int) {
	switch {
	case maxMessage < 0:
		t.maxMessage = 0
	case maxMessage > 0:
		t.maxMessage = maxMessage
	}
	if queueBytes > 0 {
		t.queueBytes = queueBytes
	}
}

// openLimitedConnection opens connections as openConnection does, through
// a limitedConn that refuses oversized messages as they arrive.
func (t *Transport) openLimitedConnection(broker *url.URL, o paho.ClientOptions) (net.Conn, error) {
	conn, err := dialBroker(broker, o)
	if err != nil {
		return nil, err
	}
	return newLimitedConn(conn, t.maxMessage, t.oversized.push), nil
}

// Oversized returns how many received messages were refused for being
// larger than Config.MaxMessageSize.
func (t *Transport) Oversized() uint64 { return t.refused.Load() }

// NotifyConnection implements transport.ConnectionNotifier. A Transport
// made by FromClient reports reconnections only, and only when the client
// was built with ResubscribeOnConnect.
func (t *Transport) NotifyConnection(f func(transport.ConnectionEvent)) (stop func()) {
	return t.listeners.Add(f)
}

// clientOptions translates cfg into paho's options.
func clientOptions(cfg Config) (*paho.ClientOptions, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("mqtt: no broker URL in Config.Brokers")
	}
	opts := paho.NewClientOptions()
	for _, b := range cfg.Brokers {
		if err := checkBrokerURL(b); err != nil {
			return nil, err
		}
		opts.AddBroker(b)
	}
	id := cfg.ClientID
	if id == "" {
		id = randomClientID()
	}
	opts.SetClientID(id).
		SetProtocolVersion(4). // MQTT 3.1.1, without paho's silent fallback to 3.1
		SetCleanSession(!cfg.PersistentSession).
		SetKeepAlive(orDefault(cfg.KeepAlive, DefaultKeepAlive)).
		SetConnectTimeout(orDefault(cfg.ConnectTimeout, DefaultConnectTimeout)).
		SetMaxReconnectInterval(orDefault(cfg.MaxReconnectInterval, DefaultMaxReconnectInterval)).
		SetAutoReconnect(true).
		SetConnectRetry(false). // Dial reports the first failure
		SetResumeSubs(false).   // we subscribe again ourselves; pending SUBSCRIBEs fail fast on a lost connection
		SetOrderMatters(true).  // one delivery goroutine keeps per-topic order
		// After a reconnect paho resends the unacknowledged messages, of
		// which the in-flight window (inflightWindow) never lets more than
		// the broker's bound be stored. paho's own MaxResumePubInFlight is
		// left off: its resume goroutine reads the connection's stop
		// channel while a quick second reconnection replaces it (a data
		// race in paho v1.5.1, seen with Mosquitto restarts).
		SetStore(newCopyingStore()).
		SetCustomOpenConnectionFn(openConnection) // buffered reads
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	return opts, nil
}

// checkBrokerURL accepts the URL schemes paho can dial.
func checkBrokerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("mqtt: broker URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "mqtt+ssl", "tcps", "ws", "wss":
	default:
		return fmt.Errorf("mqtt: broker URL %q: scheme must be tcp, mqtt, ssl, tls, mqtts, ws or wss", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("mqtt: broker URL %q has no host", raw)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// randomClientID returns "e4kit-" and 16 hex digits: 22 characters, within
// the 23 every MQTT 3.1.1 broker must accept.
func randomClientID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "e4kit-" + hex.EncodeToString(b)
}

// connect runs paho's first connection attempt within ctx.
func connect(ctx context.Context, c paho.Client, brokers []string) error {
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// paho finishes the attempt in the background; make sure it
		// does not leave a connection behind.
		go func() { <-tok.Done(); c.Disconnect(0) }()
		return fmt.Errorf("mqtt: connecting to %v: %w", brokers, ctx.Err())
	}
	err := tok.Error()
	if err == nil {
		return nil
	}
	if ct, ok := tok.(*paho.ConnectToken); ok {
		switch ct.ReturnCode() {
		case packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised:
			return fmt.Errorf("mqtt: connecting to %v: %w (%w)", brokers, ErrNotAuthorized, err)
		}
	}
	return fmt.Errorf("mqtt: connecting to %v: %w", brokers, err)
}

// Client returns the underlying paho client.
func (t *Transport) Client() paho.Client { return t.client }

// Publish sends payload on topic, the MQTT topic of the same name. QoS 0
// returns once the message is written; QoS 1 and 2 once the broker has
// acknowledged it, after waiting if Config.MaxInflight messages are
// already in flight. If ctx ends first, paho may still deliver the message.
func (t *Transport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	if err := transport.ValidateTopic(topic); err != nil {
		return err
	}
	o := transport.PublishOptions{QoS: t.defaultQoS}
	for _, opt := range opts {
		opt(&o)
	}
	if o.QoS > transport.ExactlyOnce {
		return fmt.Errorf("mqtt: QoS %d is not 0, 1 or 2", o.QoS)
	}
	if len(payload) > maxPacketBody-len(topic)-4 {
		return fmt.Errorf("mqtt: %d bytes on %q: %w", len(payload), topic, transport.ErrTooLarge)
	}
	if t.isClosed() {
		return transport.ErrClosed
	}
	if err := t.waitOpen(ctx); err != nil {
		return fmt.Errorf("mqtt: publishing to %q: %w", topic, err)
	}
	if o.QoS > transport.AtMostOnce {
		if err := t.inflight.acquire(ctx, t.done); err != nil {
			return fmt.Errorf("mqtt: publishing to %q: %w", topic, err)
		}
	}
	// paho keeps the slice until the packet is written, possibly after
	// Publish returned (ctx ended): give it a copy.
	tok := t.client.Publish(topic, byte(o.QoS), o.Retain, bytes.Clone(payload))
	if o.QoS > transport.AtMostOnce {
		defer t.inflight.releaseWhenDone(tok)
	}
	if err := t.wait(ctx, tok); err != nil {
		return fmt.Errorf("mqtt: publishing to %q: %w", topic, err)
	}
	return nil
}

// Close ends every subscription and, for a Transport made by Dial,
// disconnects. A Transport made by FromClient leaves the application's
// client connected and unsubscribes what it subscribed instead. Close is
// idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	subs := t.subs
	t.subs = nil
	leftover := append(slices.Clone(t.remote), t.stale...)
	t.remote, t.stale, t.backlog = nil, nil, nil
	t.mu.Unlock()

	close(t.done)
	for s := range subs {
		s.end()
	}
	if t.owned {
		t.client.Disconnect(250)
		return nil
	}
	unregister(t)
	if len(leftover) > 0 && t.client.IsConnectionOpen() {
		tok := t.client.Unsubscribe(leftover...)
		if !tok.WaitTimeout(closeTimeout) {
			return errors.New("mqtt: closing: the broker did not confirm the unsubscription in time")
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt: closing: %w", err)
		}
	}
	return nil
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// waitOpen waits until the connection is up. paho would silently drop a
// QoS 0 message published while it reconnects, and refuses SUBSCRIBE then.
func (t *Transport) waitOpen(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for !t.client.IsConnectionOpen() {
		if !t.client.IsConnected() && !t.connecting.Load() {
			return errors.New("mqtt: not connected, and the client does not reconnect by itself")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.done:
			return transport.ErrClosed
		case <-time.After(pollInterval):
		}
	}
	return nil
}

// wait waits for a paho token, ctx or Close.
func (t *Transport) wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
		return transport.ErrClosed
	}
}
