// Package amqp is the transport.Transport adapter for AMQP 0-9-1 brokers
// (RabbitMQ), built on github.com/rabbitmq/amqp091-go.
//
// # Topics
//
// Canonical topics become routing keys on one topic exchange (default
// amq.topic, which RabbitMQ's MQTT plugin also uses, so MQTT and AMQP
// clients share topics and E4 keys): "/" maps to ".", and in filters "+"
// maps to "*" and "#" stays "#". A topic level containing "." cannot be
// mapped and is refused with transport.ErrInvalidTopic, as is a filter
// level that is exactly "*"; see RoutingKey and BindingKey. A delivery's
// routing key is mapped back ("." to "/") for Message.Topic.
//
// # Publishing
//
// Publishing uses a channel in confirm mode, shared by concurrent
// publishers (each publication gets its own deferred confirmation, so many
// can be in flight). With transport.AtLeastOnce (the default) or
// ExactlyOnce the message is persistent and Publish returns once the broker
// acknowledged it; a negative acknowledgement is ErrNacked. With AtMostOnce
// the message is transient and Publish returns once it is written to the
// connection. Messages are published without the mandatory flag: as in
// MQTT, a message no subscriber's queue matches is dropped by the broker
// and still acknowledged, so Publish succeeds. transport.WithRetain is
// ignored: AMQP has no retained messages.
//
// # Subscribing
//
// Each subscription declares its own exclusive, auto-delete, server-named
// queue bound to the exchange with the binding key, and consumes it with
// manual acknowledgements: a delivery is acknowledged once it is in the
// subscription's buffer (Prefetch messages), so the broker holds back
// whatever Receive has not caught up with, up to Prefetch more in flight.
// A message is acknowledged before the application has received it: one
// still buffered when the process dies is lost.
//
// # Reconnection
//
// A Transport made by Dial watches its connection. When it is lost (broker
// restart, network failure, channel error), it reconnects with exponential
// backoff, re-declares the exchange and re-creates every live
// subscription's queue, binding and consumer before publishing resumes;
// Publish blocks meanwhile until ctx ends. Queues are exclusive to a
// connection, so messages published while a subscriber was disconnected
// are lost, as with MQTT clean sessions. A publication interrupted by the
// loss is sent again on the new connection, so AtLeastOnce may deliver it
// twice.
//
// FromChannel wraps a channel the application opened; it cannot reconnect,
// since a channel does not give access to its connection. Protect adds E4
// to such a channel in one call.
package amqp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/internal/notify"
)

var (
	// ErrNacked reports a publication the broker refused (basic.nack),
	// e.g. because a queue it was routed to reached its limit with
	// x-overflow "reject-publish".
	ErrNacked = errors.New("amqp: publication not acknowledged by the broker")

	// ErrChannelClosed reports that the channel given to FromChannel has
	// closed: such a transport cannot reconnect.
	ErrChannelClosed = errors.New("amqp: channel closed (a FromChannel transport cannot reconnect)")
)

// Transport is a connection to an AMQP broker; see the package
// documentation. It is safe for concurrent use.
type Transport struct {
	set settings
	// connect opens a new session; nil for FromChannel, which cannot.
	connect func() (*session, error)
	// appChannel is the channel given to FromChannel.
	appChannel *amqp091.Channel

	requests  chan request
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when the supervisor has finished
	closeOnce sync.Once

	mu     sync.Mutex
	sess   *session      // current session; nil while disconnected
	ready  chan struct{} // closed when sess is set or the transport is broken
	broken error         // FromChannel: the channel is gone for good
	closed bool

	tags atomic.Uint64
	// oversized counts deliveries refused for their size.
	oversized atomic.Uint64

	// listeners receive the connection events.
	listeners notify.Listeners
}

var (
	_ transport.Transport          = (*Transport)(nil)
	_ transport.ConnectionNotifier = (*Transport)(nil)
)

// Oversized returns how many received messages were refused for being
// larger than Config.MaxMessageSize.
func (t *Transport) Oversized() uint64 { return t.oversized.Load() }

// NotifyConnection implements transport.ConnectionNotifier: events come
// from the supervisor goroutine. A FromChannel transport reports the loss
// of its channel, which is final.
func (t *Transport) NotifyConnection(f func(transport.ConnectionEvent)) (stop func()) {
	return t.listeners.Add(f)
}

// session is one connection (or the application's channel) with its
// publishing channel in confirm mode.
type session struct {
	conn *amqp091.Connection // nil for FromChannel
	pub  *amqp091.Channel
	// lost is closed once the connection or publishing channel closed;
	// lostErr is the reason (nil for a clean close).
	lost    chan struct{}
	lostErr error
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// Dial connects to the broker at cfg.URL, declares the exchange and
// returns a Transport that reconnects by itself. ctx bounds the first
// connection only.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	if cfg.URL == "" {
		return nil, errors.New("amqp: Config.URL is empty")
	}
	if _, err := amqp091.ParseURI(cfg.URL); err != nil {
		return nil, fmt.Errorf("amqp: parsing URL: %w", err)
	}
	t := newTransport(cfg.resolve())
	t.set.ownsChannels = true
	amqpCfg := amqp091.Config{
		Heartbeat:       t.set.heartbeat,
		TLSClientConfig: cfg.TLS.Clone(), // amqp091 sets ServerName on it: never write the caller's config
		Dial:            amqp091.DefaultDial(t.set.dialTimeout),
		Properties:      amqp091.Table{"connection_name": "e4kit transport/amqp"},
	}
	t.connect = func() (*session, error) { return t.dialSession(cfg.URL, amqpCfg) }
	if cfg.ConnectRetry {
		go t.run(nil)
		return t, nil
	}
	sess, err := firstSession(ctx, t.connect)
	if err != nil {
		return nil, err
	}
	t.start(sess)
	return t, nil
}

// firstSession connects once, giving up when ctx ends (a late connection
// is then closed).
func firstSession(ctx context.Context, connect func() (*session, error)) (*session, error) {
	type result struct {
		sess *session
		err  error
	}
	res := make(chan result, 1)
	go func() {
		sess, err := connect()
		res <- result{sess, err}
	}()
	select {
	case r := <-res:
		return r.sess, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.sess != nil {
				r.sess.close()
			}
		}()
		return nil, fmt.Errorf("amqp: connecting: %w", ctx.Err())
	}
}

// FromChannel wraps a channel the application opened, with the settings
// of cfg that Config says FromChannel takes (cfg may be nil: the
// defaults, and the channel's QoS left as it is). It puts the channel in
// confirm mode, declares the exchange, and creates each subscription's
// queue and consumer on it.
//
// Such a transport cannot reconnect: once the channel closes (connection
// loss, or a channel error, which AMQP reports by closing the channel),
// Publish and Subscribe fail with ErrChannelClosed and subscriptions end.
// Close cancels the transport's consumers but leaves the channel open: the
// application owns it. The application must not make synchronous calls on
// the channel (declarations, Qos, Get...) concurrently with Subscribe,
// Unsubscribe or Close, since AMQP channels answer them in order; its own
// publications and consumers are fine. Confirm listeners the application
// registered on the channel (NotifyPublish, NotifyConfirm) also receive
// the confirmations of the transport's publications, and must keep
// reading them, as amqp091 requires.
func FromChannel(ch *amqp091.Channel, cfg *Config) (*Transport, error) {
	if ch == nil || ch.IsClosed() {
		return nil, ErrChannelClosed
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	set := c.resolve()
	set.setPrefetch = c.Prefetch > 0
	set.onReconnect = nil // a FromChannel transport never reconnects
	t := newTransport(set)
	t.appChannel = ch
	sess, err := t.prepareSession(nil, ch)
	if err != nil {
		return nil, err
	}
	if set.setPrefetch {
		if err := ch.Qos(set.prefetch, 0, false); err != nil {
			return nil, fmt.Errorf("amqp: setting prefetch: %w", err)
		}
	}
	t.start(sess)
	return t, nil
}

func newTransport(set settings) *Transport {
	return &Transport{
		set:      set,
		requests: make(chan request),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		ready:    make(chan struct{}),
	}
}

// start publishes the first session and runs the supervisor.
func (t *Transport) start(sess *session) {
	t.publishSession(sess)
	go t.run(sess)
}

// dialSession opens a connection and its publishing channel.
func (t *Transport) dialSession(url string, cfg amqp091.Config) (*session, error) {
	conn, err := amqp091.DialConfig(url, cfg)
	if err != nil {
		return nil, fmt.Errorf("amqp: connecting: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("amqp: opening a channel: %w", err)
	}
	sess, err := t.prepareSession(conn, ch)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

// prepareSession turns on confirms, declares the exchange and starts
// watching for the loss of the connection or channel.
func (t *Transport) prepareSession(conn *amqp091.Connection, ch *amqp091.Channel) (*session, error) {
	sess := &session{conn: conn, pub: ch, lost: make(chan struct{})}
	// Registered before any call that could close them, so no loss is
	// missed; amqp091 closes a listener registered on a closed object.
	chClosed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	var connClosed chan *amqp091.Error
	if conn != nil {
		connClosed = conn.NotifyClose(make(chan *amqp091.Error, 1))
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("amqp: enabling publisher confirms: %w", err)
	}
	if err := t.declareExchange(ch); err != nil {
		return nil, err
	}
	go t.watch(sess, connClosed, chClosed)
	return sess, nil
}

// declareExchange checks a predeclared amq.* exchange, or declares a
// durable topic exchange.
func (t *Transport) declareExchange(ch *amqp091.Channel) error {
	name := t.set.exchange
	var err error
	if t.set.passive {
		err = ch.ExchangeDeclarePassive(name, amqp091.ExchangeTopic, true, false, false, false, nil)
	} else {
		err = ch.ExchangeDeclare(name, amqp091.ExchangeTopic, true, false, false, false, nil)
	}
	if err != nil {
		return fmt.Errorf("amqp: declaring exchange %q: %w", name, err)
	}
	return nil
}

// watch marks the session lost when its connection or publishing channel
// closes. A channel closed on a live connection closes the connection too,
// so that recovery starts from a clean state.
func (t *Transport) watch(sess *session, connClosed, chClosed chan *amqp091.Error) {
	var reason *amqp091.Error
	select {
	case reason = <-connClosed:
	case reason = <-chClosed:
	case <-t.done:
		// Closed: a FromChannel transport leaves the channel open.
		return
	}
	if sess.conn != nil {
		_ = sess.conn.Close()
	}
	if reason != nil {
		sess.lostErr = reason
	}
	t.mu.Lock()
	if t.sess == sess {
		t.sess = nil
		t.ready = make(chan struct{})
	}
	t.mu.Unlock()
	close(sess.lost)
}

// close ends a session that was never published.
func (s *session) close() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// publishSession makes sess the current session, unless it was lost
// already, and wakes the publishers waiting for one.
func (t *Transport) publishSession(sess *session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sess.isLost() {
		return false
	}
	t.sess = sess
	close(t.ready)
	return true
}

// setBroken records that a FromChannel transport lost its channel.
func (t *Transport) setBroken(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.broken = err
	close(t.ready)
}

// waitSession returns the current session, waiting through an outage.
func (t *Transport) waitSession(ctx context.Context) (*session, error) {
	for {
		t.mu.Lock()
		sess, ready, closed, broken := t.sess, t.ready, t.closed, t.broken
		t.mu.Unlock()
		switch {
		case closed:
			return nil, transport.ErrClosed
		case broken != nil:
			return nil, broken
		case sess != nil:
			return sess, nil
		}
		select {
		case <-ready:
		case <-t.closing:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Publish sends payload on topic; see the package documentation for what
// each QoS waits for. During an outage it waits for the reconnection.
func (t *Transport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	if t.isClosed() {
		return fmt.Errorf("amqp: publish %q: %w", topic, transport.ErrClosed)
	}
	key, err := RoutingKey(topic)
	if err != nil {
		return err
	}
	if len(payload) > t.set.maxPayload {
		return fmt.Errorf("amqp: publish %q: %d bytes: %w", topic, len(payload), transport.ErrTooLarge)
	}
	qos := transport.ApplyPublishOptions(opts).QoS
	msg := amqp091.Publishing{Body: payload, DeliveryMode: amqp091.Persistent}
	if qos == transport.AtMostOnce {
		msg.DeliveryMode = amqp091.Transient
	}
	for {
		sess, err := t.waitSession(ctx)
		if err != nil {
			return fmt.Errorf("amqp: publish %q: %w", topic, err)
		}
		retry, err := t.publishOnce(ctx, sess, key, msg, qos)
		if !retry {
			if err != nil {
				return fmt.Errorf("amqp: publish %q: %w", topic, err)
			}
			return nil
		}
		// The session died under us: wait until it is marked lost, so
		// that waitSession does not return it again.
		select {
		case <-sess.lost:
		case <-t.closing:
		case <-ctx.Done():
			return fmt.Errorf("amqp: publish %q: %w", topic, ctx.Err())
		}
	}
}

// publishOnce publishes on one session. retry reports that the session
// was lost before the broker confirmed.
func (t *Transport) publishOnce(ctx context.Context, sess *session, key string, msg amqp091.Publishing, qos transport.QoS) (retry bool, err error) {
	confirm, err := sess.pub.PublishWithDeferredConfirmWithContext(ctx, t.set.exchange, key, false, false, msg)
	switch {
	case err != nil && ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil && sess.pub.IsClosed():
		return true, nil
	case err != nil:
		return false, classify(err)
	case qos == transport.AtMostOnce || confirm == nil:
		return false, nil
	}
	select {
	case <-confirm.Done():
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.closing:
		return false, transport.ErrClosed
	}
	if confirm.Acked() {
		return false, nil
	}
	// amqp091 resolves pending confirmations as negative when the channel
	// closes: that is a lost session, not a refusal.
	if sess.pub.IsClosed() {
		return true, nil
	}
	return false, ErrNacked
}

// Subscribe declares the subscription's queue, binds it and starts
// consuming before it returns. During an outage it waits for the
// reconnection.
func (t *Transport) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	if t.isClosed() {
		return nil, fmt.Errorf("amqp: subscribe %q: %w", filter, transport.ErrClosed)
	}
	key, err := BindingKey(filter)
	if err != nil {
		return nil, err
	}
	s := newSubscription(t, filter, key)
	req := request{kind: subscribeRequest, sub: s, reply: make(chan error, 1)}
	if err := t.send(ctx, req); err != nil {
		s.end()
		return nil, fmt.Errorf("amqp: subscribe %q: %w", filter, err)
	}
	select {
	case err = <-req.reply:
	case <-ctx.Done():
		err = ctx.Err()
		// The supervisor may still create the queue: have it removed.
		go t.abandon(s)
	case <-t.done:
		err = transport.ErrClosed
	}
	if err != nil {
		s.end()
		return nil, fmt.Errorf("amqp: subscribe %q: %w", filter, err)
	}
	return s, nil
}

// abandon removes a subscription whose Subscribe gave up.
func (t *Transport) abandon(s *subscription) {
	s.end()
	_ = t.send(context.Background(), request{kind: unsubscribeRequest, sub: s, reply: make(chan error, 1)})
}

// send hands a request to the supervisor.
func (t *Transport) send(ctx context.Context, req request) error {
	select {
	case t.requests <- req:
		return nil
	case <-t.done:
		if t.isClosed() {
			return transport.ErrClosed
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.broken
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the connection (or, for FromChannel, cancels the
// transport's consumers) and ends every subscription. It is idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		close(t.closing)
		<-t.done
	})
	return nil
}

// nextTag names a consumer uniquely within the transport.
func (t *Transport) nextTag() string {
	return "e4kit-" + strconv.FormatUint(t.tags.Add(1), 10)
}

// classify marks the broker's refusals that no retry fixes (access
// refused by the broker's permissions, a frame too large) as permanent.
func classify(err error) error {
	var amqpErr *amqp091.Error
	if errors.As(err, &amqpErr) && (amqpErr.Code == amqp091.AccessRefused || amqpErr.Code == amqp091.FrameError) {
		return transport.Permanent(err)
	}
	return err
}
