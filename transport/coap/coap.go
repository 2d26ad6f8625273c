// Package coap is the CoAP adapter of package transport: publish/subscribe
// over a CoAP pub/sub broker (package broker, in the spirit of
// draft-ietf-core-coap-pubsub) with go-coap v3, over UDP or DTLS.
//
// # Mapping
//
// A canonical topic is a resource under a path prefix ("/ps" by default):
// topic level i is Uri-Path option i after the prefix, byte for byte.
// CoAP carries each segment in its own option, so nothing is escaped: a
// level may hold "%", "?", spaces or be empty, and the topic (hence its E4
// key) is the same as over MQTT or AMQP. A level longer than 255 bytes
// does not fit in an option and is refused with ErrInvalidTopic.
//
//   - Publish is a PUT of the payload to the topic's resource, confirmable
//     (waiting for 2.04/2.01) except for QoS AtMostOnce payloads that fit
//     in one datagram, which go non-confirmable without waiting. A
//     publication travels in one datagram when the whole CoAP message fits
//     in Config.MaxDatagramSize (1152 bytes by default, RFC 7252 §4.6: a
//     1 KiB message with E4's 24 bytes fits), else block-wise (Block1).
//   - Subscribe is a GET with Observe on the topic's (or filter's) path.
//     The registration response is the resource's state before the
//     subscription, not a publication, so it is never delivered; every
//     later 2.05 notification is one Message. A notification that arrives
//     block-wise (its first block, with Block2) is completed by GETs of
//     the other blocks before it is delivered. With our broker, filters
//     may use "+" and "#"; notifications then name the concrete topic in
//     Location-Path options.
//   - Unsubscribe deregisters (GET with Observe: 1).
//
// # Recovery
//
// An observation can end without the subscriber asking: the broker says so
// (a notification without Observe, such as the 5.03 our broker sends when
// it stops), the connection fails (keepalive pings unanswered twice, or
// the socket reports an error), or the broker forgot it silently (a crash
// and restart between two pings). The adapter observes again, with
// backoff, in the first two cases, on a new connection when it dialled
// itself; against the third it renews every observation periodically
// (Config.Refresh), new one first, and drops the duplicates of the
// overlap by ETag. Messages published while the broker is away are lost:
// CoAP brokers keep no sessions.
//
// # Block-wise transfers
//
// go-coap sends block-wise every payload larger than a block (at most
// 1024 bytes), however small the datagram would be, and turns block-wise
// transfers on or off per connection only. The connections Dial opens
// therefore have go-coap's block-wise layer off and the adapter does RFC
// 7959 itself: Block1 for large publications, Block2 for large
// notifications (it completes them on an application's connection too,
// when go-coap does not). An application's connection (FromConn) is
// otherwise left as it is: with go-coap's block-wise layer on, payloads
// over one block go block-wise however small.
//
// # Limits
//
//   - The registration response is recognised as a piggybacked
//     acknowledgement; a broker answering a registration with a separate
//     response would have it delivered as a first message.
//   - A subscriber that leaves its buffer (Config.ReceiveBuffer) full for
//     longer than CoAP's retransmission window (about a minute) loses its
//     observation at the broker until the next renewal.
//   - A Publish whose connection is replaced mid-request is sent again on
//     the new one: rarely, a message arrives twice.
//   - CoAP has 65,536 Message IDs, and one may not be reused with the same
//     peer within EXCHANGE_LIFETIME, 247 s (RFC 7252 §4.4): a server takes
//     a request with a recently seen ID for a retransmission and drops it.
//     A Transport therefore sends at most 65,000 requests per 247 s
//     (bursts at full speed, about 263 per second sustained); past that,
//     Publish waits for an ID to age out. Several Transports (several
//     local endpoints) share nothing and add up. On a FromConn
//     connection, requests the application sends itself are not counted.
//   - go-coap's UDP server looks through its cache of the responses of
//     the last 247 s on every datagram of a connection (upstream issue
//     plgd-dev/go-coap#586), so a client publishing without pause to a
//     go-coap server, ours included, slows down as that cache fills.
package coap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/internal/datagram"
	"github.com/e4-iot/e4kit/transport/coap/internal/msgid"
	"github.com/e4-iot/e4kit/transport/coap/internal/topicpath"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/internal/notify"
)

// Defaults of Config.
const (
	DefaultPrefix    = "/ps"
	DefaultTimeout   = 5 * time.Second
	DefaultKeepAlive = 10 * time.Second
	DefaultRefresh   = 2 * time.Minute
	DefaultBlockSize = 1024
	// DefaultMaxDatagramSize bounds a CoAP message when the path MTU is
	// unknown (RFC 7252 §4.6); libcoap refuses larger datagrams.
	DefaultMaxDatagramSize = datagram.DefaultMaxSize
	DefaultMaxPayload      = 1 << 20
	DefaultReceiveBuffer   = 256
	DefaultReceiveBytes    = 16 << 20
)

// Config configures Dial and FromConn. Only Addr is required, by Dial;
// FromConn ignores Addr, DTLS, MaxDatagramSize and ConnectRetry, which are
// about the connection the application made.
type Config struct {
	// Addr is the broker's "host:port".
	Addr string

	// DTLS, when set, secures the connection with DTLS.
	DTLS *DTLSConfig

	// PathPrefix is the path under which the broker keeps topics; default
	// "/ps". "/" means topics at the root (libcoap's server).
	PathPrefix string

	// Timeout bounds the exchanges the adapter makes on its own: dialling,
	// keepalive pings, observing again. Default 5 s.
	Timeout time.Duration

	// KeepAlive is the interval of the pings that check the broker is
	// still there; default 10 s, negative disables them.
	KeepAlive time.Duration

	// Refresh is the interval at which observations are renewed, so that
	// one a crashed broker forgot comes back; default 2 min, negative
	// disables it.
	Refresh time.Duration

	// BlockSize is the block size of block-wise transfers: a power of two
	// from 16 to 1024; default 1024.
	BlockSize int

	// MaxDatagramSize bounds the CoAP messages (header, token, options and
	// payload) published in one datagram: a payload that would make a
	// larger one goes block-wise, unless it fits in one block anyway.
	// Default DefaultMaxDatagramSize; with BlockSize below 1024, or
	// negative, none: every payload over one block goes block-wise. At
	// most 64512. Only for connections Dial opens.
	MaxDatagramSize int

	// MaxPayload is the largest payload Publish accepts, and the largest
	// notification a subscription takes; default 1 MiB.
	MaxPayload int

	// ReceiveBuffer is how many messages a subscription holds for Receive;
	// when it is full, acknowledging the next notification waits, which
	// makes our broker hold the rest in its queue. Default 256.
	ReceiveBuffer int

	// ReceiveBytes bounds the payload bytes a subscription holds for
	// Receive, beside ReceiveBuffer (default DefaultReceiveBytes): past
	// it, acknowledging the next notification waits, as when the buffer
	// is full. A received notification larger than MaxPayload is refused
	// from its Size2 option, before its blocks are fetched, or as soon as
	// its blocks go past MaxPayload.
	ReceiveBytes int

	// NoWildcards says that the broker does not understand "+" and "#"
	// (libcoap's server): Subscribe then refuses filters with them.
	NoWildcards bool

	// ConnectRetry makes Dial return at once, without waiting for the
	// broker to answer: the Transport connects in the background, retrying
	// with backoff, and Publish and Subscribe wait for it meanwhile.
	// Without it Dial fails when the broker does not answer. The first
	// failure is reported as a transport.Disconnected event. Only for Dial.
	ConnectRetry bool

	// OnError, if set, receives errors of the background work (observing
	// again, keepalive). It must not block.
	OnError func(error)
}

// DTLSConfig authenticates the broker and the client over DTLS: with a
// pre-shared key (PSK set) or with certificates.
type DTLSConfig struct {
	// PSKIdentity names the client's key to the broker.
	PSKIdentity []byte
	// PSK is the pre-shared key.
	PSK []byte

	// Certificates are the client's certificate chains, for brokers that
	// require one.
	Certificates []tls.Certificate
	// RootCAs verify the broker's certificate; nil uses the system roots.
	RootCAs *x509.CertPool
	// ServerName is checked against the broker's certificate; default: the
	// host of Addr.
	ServerName string
}

// Transport is a transport.Transport over CoAP. Make one with Dial or
// FromConn. It is safe for concurrent use.
type Transport struct {
	cfg    Config
	prefix []string
	szx    blockwise.SZX
	dial   func(ctx context.Context) (*udpclient.Conn, error) // nil: the application's connection
	// ownBlocks: the connection has go-coap's block-wise layer off, the
	// adapter does block-wise transfers itself, and a message travels
	// whole up to maxDatagram bytes (0: up to one block of payload).
	ownBlocks   bool
	maxDatagram int

	mu     sync.Mutex
	conn   *udpclient.Conn // nil while reconnecting
	ready  chan struct{}   // closed while conn is usable
	ids    *msgid.Budget   // the Message IDs used lately
	subs   map[*subscription]struct{}
	closed bool
	// connGen counts the connections Dial's dialler made.
	connGen uint64

	// listeners receive the connection events.
	listeners notify.Listeners

	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

var (
	_ transport.Transport          = (*Transport)(nil)
	_ transport.ConnectionNotifier = (*Transport)(nil)
)

// NotifyConnection implements transport.ConnectionNotifier for a Transport
// made by Dial: a Disconnected event when the connection fails or the
// broker stops answering pings, a Connected event once a new connection
// is up and every subscription observes again. A FromConn Transport
// reports nothing.
func (t *Transport) NotifyConnection(f func(transport.ConnectionEvent)) (stop func()) {
	return t.listeners.Add(f)
}

// Dial connects to the broker at cfg.Addr and checks that it answers.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	if cfg.Addr == "" {
		return nil, errors.New("coap: Config.Addr is empty")
	}
	t, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	if t.maxDatagram, err = datagram.Resolve(cfg.MaxDatagramSize, t.szx); err != nil {
		return nil, fmt.Errorf("coap: MaxDatagramSize: %w", err)
	}
	t.ownBlocks = true
	t.dial = t.dialer()
	if cfg.ConnectRetry {
		t.wg.Add(1)
		go t.supervise()
		return t, nil
	}
	conn, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	t.start(conn)
	return t, nil
}

// FromConn makes a Transport of an application's own go-coap connection
// (from udp.Dial or dtls.Dial; enable block-wise transfers on it for
// payloads over one block). cfg may be nil; its Addr, DTLS and
// MaxDatagramSize are ignored: go-coap decides how publications travel.
// The connection stays the application's: Close ends the subscriptions but
// does not close it, and if the application closes it, the Transport
// closes too. Without a dialler of its own, the Transport recovers lost
// observations on the same connection.
func FromConn(conn *udpclient.Conn, cfg *Config) (*Transport, error) {
	if conn == nil {
		return nil, errors.New("coap: FromConn needs a connection")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	t, err := newTransport(c)
	if err != nil {
		return nil, err
	}
	t.start(conn)
	return t, nil
}

// Protect adds E4 to an application's go-coap connection in one call: it
// wraps conn with FromConn(conn, cfg) and the result with
// e4transport.Protect(ctx, t, c, opts), which subscribes to the client's
// control topic. cfg and opts may be nil (the adapter's defaults, strict
// E4 policies). Closing the result ends the adapter but leaves conn open.
func Protect(ctx context.Context, conn *udpclient.Conn, c *e4.Client, cfg *Config, opts *e4transport.Options) (*e4transport.Protected, error) {
	t, err := FromConn(conn, cfg)
	if err != nil {
		return nil, err
	}
	p, err := e4transport.Protect(ctx, t, c, opts)
	if err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("coap: protecting the connection: %w", err)
	}
	return p, nil
}

func newTransport(cfg Config) (*Transport, error) {
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = DefaultPrefix
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	szx, err := blockSZX(cfg.BlockSize)
	if err != nil {
		return nil, err
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	setDefault(&cfg.MaxPayload, DefaultMaxPayload)
	setDefault(&cfg.ReceiveBuffer, DefaultReceiveBuffer)
	setDefault(&cfg.ReceiveBytes, DefaultReceiveBytes)
	return &Transport{
		cfg:    cfg,
		prefix: topicpath.ParsePrefix(cfg.PathPrefix),
		szx:    szx,
		ready:  make(chan struct{}),
		subs:   make(map[*subscription]struct{}),
		done:   make(chan struct{}),
		ids:    msgid.New(msgid.ExchangeLifetime, msgid.Limit, time.Now),
	}, nil
}

// takeID accounts for one request about to be sent, waiting while CoAP's
// Message ID space is used up (see package msgid). Publications and other
// data exchanges pass msgid.ControlReserve; those keeping the connection
// alive, 0.
func (t *Transport) takeID(ctx context.Context, reserve int) error {
	return t.ids.Take(ctx, reserve, t.done)
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func blockSZX(size int) (blockwise.SZX, error) {
	for szx := blockwise.SZX16; szx <= blockwise.SZX1024; szx++ {
		if int(szx.Size()) == size {
			return szx, nil
		}
	}
	return 0, fmt.Errorf("coap: block size %d is not a power of two from 16 to 1024", size)
}

// pathOptions returns the Uri-Path options of a topic or filter.
func (t *Transport) pathOptions(name string) ([]message.Option, error) {
	opts, err := topicpath.Options(message.URIPath, t.prefix, name)
	if err != nil {
		return nil, errors.Join(transport.ErrInvalidTopic, fmt.Errorf("coap: topic %q: %w", name, err))
	}
	return opts, nil
}

// Publish implements transport.Transport. While the adapter reconnects,
// it waits for the new connection; a request lost with the old connection
// is sent again, so the broker may, rarely, get a message twice.
func (t *Transport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	if t.isClosed() {
		return transport.ErrClosed
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return err
	}
	if len(payload) > t.cfg.MaxPayload {
		return fmt.Errorf("coap: %d-byte payload, at most %d: %w", len(payload), t.cfg.MaxPayload, transport.ErrTooLarge)
	}
	path, err := t.pathOptions(topic)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("coap: publishing on %q: %w", topic, err)
	}
	qos := transport.ApplyPublishOptions(opts).QoS
	for {
		conn, err := t.waitConn(ctx)
		if err != nil {
			return err
		}
		err = t.put(ctx, conn, path, payload, qos)
		switch {
		case err == nil:
			return nil
		case t.isClosed():
			return transport.ErrClosed
		case ctx.Err() != nil || conn.Context().Err() == nil || t.dial == nil:
			// Only a request lost with a connection being replaced is
			// worth sending again.
			return fmt.Errorf("coap: publishing on %q: %w", topic, err)
		}
	}
}

// StatusError is a response other than success from the broker.
type StatusError struct {
	Code    codes.Code // such as codes.RequestEntityTooLarge (4.13)
	Message string     // diagnostic payload, if any
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("coap: broker answered %d.%02d %v", e.Code>>5, e.Code&0x1f, e.Code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Subscribe implements transport.Transport. A filter with "+" or "#" needs
// a broker that understands them (ours does; see Config.NoWildcards).
func (t *Transport) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	if err := transport.ValidateFilter(filter); err != nil {
		return nil, err
	}
	wildcard := strings.ContainsAny(filter, "+#")
	if wildcard && t.cfg.NoWildcards {
		return nil, errors.Join(transport.ErrInvalidTopic, fmt.Errorf("coap: filter %q: the broker has no wildcards", filter))
	}
	path, err := t.pathOptions(filter)
	if err != nil {
		return nil, err
	}
	s := newSubscription(t, filter, wildcard, path)
	for {
		conn, err := t.waitConn(ctx)
		if err != nil {
			return nil, err
		}
		err = s.observe(ctx, conn, false)
		if err == nil {
			break
		}
		if t.isClosed() {
			return nil, transport.ErrClosed
		}
		if ctx.Err() != nil || conn.Context().Err() == nil || t.dial == nil {
			return nil, fmt.Errorf("coap: subscribing to %q: %w", filter, err)
		}
		// The connection was lost meanwhile: observe on the next one.
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		s.end(ctx)
		return nil, transport.ErrClosed
	}
	t.subs[s] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go s.maintain()
	return s, nil
}

// Close implements transport.Transport: it deregisters every observation
// (for up to Config.Timeout), ends the subscriptions, and closes the
// connection if Dial opened it.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	subs := make([]*subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	conn := t.conn
	t.mu.Unlock()
	close(t.done)

	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() { s.end(ctx) })
	}
	wg.Wait()
	t.wg.Wait()
	if conn != nil && t.dial != nil {
		if err := conn.Close(); err != nil {
			return fmt.Errorf("coap: closing the connection: %w", err)
		}
	}
	return nil
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *Transport) removeSub(s *subscription) {
	t.mu.Lock()
	delete(t.subs, s)
	t.mu.Unlock()
}

func (t *Transport) reportError(err error) {
	if t.cfg.OnError != nil {
		t.cfg.OnError(err)
	}
}
