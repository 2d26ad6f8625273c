package amqp

import (
	"crypto/tls"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Defaults of Config.
const (
	// DefaultExchange is RabbitMQ's predeclared topic exchange, the one its
	// MQTT plugin publishes to: AMQP and MQTT clients then share topics.
	DefaultExchange = "amq.topic"
	// DefaultPrefetch bounds the deliveries in flight per subscription.
	DefaultPrefetch = 128
	// DefaultMaxPayload is RabbitMQ's default max_message_size (128 MiB).
	DefaultMaxPayload = 128 << 20
	// DefaultMaxMessageSize is the default of Config.MaxMessageSize.
	DefaultMaxMessageSize = 8 << 20
	// DefaultQueueBytes is the default of Config.QueueBytes.
	DefaultQueueBytes = 64 << 20
	// DefaultHeartbeat detects a dead connection within about two beats.
	DefaultHeartbeat = 10 * time.Second

	defaultDialTimeout = 15 * time.Second
	defaultMinBackoff  = 100 * time.Millisecond
	defaultMaxBackoff  = 5 * time.Second
)

// Config configures Dial and FromChannel. Only URL is required, by Dial.
// FromChannel takes Exchange, Prefetch, QueueArgs, MaxPayload,
// MaxMessageSize, QueueBytes and OnConnectionLost from it and ignores the
// rest, which is about the connection the application made.
type Config struct {
	// URL is "amqp://user:pass@host:port/vhost", or "amqps://..." for
	// TLS.
	URL string
	// TLS configures amqps connections; nil uses the system roots and
	// the URL's host name.
	TLS *tls.Config

	// Exchange is the topic exchange messages are published to and queues
	// are bound to (default DefaultExchange). Names starting with "amq."
	// are predeclared by the broker and only checked (passive declare);
	// any other is declared durable, type "topic", if missing.
	Exchange string

	// Prefetch is the number of unacknowledged deliveries the broker sends
	// to one subscription ahead of Receive (default DefaultPrefetch); the
	// subscription also buffers up to Prefetch received messages.
	// FromChannel sets it (basic.qos, per consumer) on the application's
	// channel only when it is above zero, and it then also applies to the
	// consumers the application creates on that channel afterwards; zero
	// leaves the channel's QoS as the application set it (unlimited by
	// default).
	Prefetch int

	// QueueArgs are the x-arguments of each subscription's queue, e.g.
	// {"x-max-length": 10000, "x-overflow": "drop-head"} to bound what a
	// slow subscriber accumulates on the broker.
	QueueArgs amqp091.Table

	// MaxPayload is the largest payload Publish accepts (default
	// DefaultMaxPayload); larger ones fail with transport.ErrTooLarge.
	MaxPayload int

	// MaxMessageSize bounds the body of a received message (default
	// DefaultMaxMessageSize; negative: no bound). A larger delivery is
	// rejected (not requeued: the broker drops it or dead-letters it) and
	// counted by Transport.Oversized. The client library has read the
	// whole body by then: what a subscription can hold in memory before
	// the adapter sees it is Prefetch deliveries of up to the broker's
	// max_message_size (RabbitMQ: 128 MiB by default; lower it on the
	// broker to bound that).
	MaxMessageSize int
	// QueueBytes bounds the bodies each subscription buffers for Receive
	// (default DefaultQueueBytes), beside Prefetch: past it the
	// subscription stops taking deliveries (the broker keeps them) until
	// Receive catches up.
	QueueBytes int

	// Heartbeat is the AMQP heartbeat interval (default DefaultHeartbeat).
	Heartbeat time.Duration
	// DialTimeout bounds each TCP connect and handshake (default 15 s).
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, doubling from the first to the second (default 100 ms and
	// 5 s).
	MinBackoff, MaxBackoff time.Duration

	// ConnectRetry makes Dial return at once, without waiting for the
	// broker: the Transport connects in the background with the same
	// backoff as after a loss (MinBackoff doubling to MaxBackoff), and
	// Publish and Subscribe wait for it meanwhile. Without it Dial fails
	// when the first attempt fails. Retries go on whatever the reason,
	// refused credentials included; the first failure is reported as a
	// transport.Disconnected event with its error.
	ConnectRetry bool

	// OnConnectionLost, if set, is called when the connection is lost,
	// before reconnecting (for FromChannel: when the channel closes). It
	// must not block.
	OnConnectionLost func(err error)
	// OnReconnected, if set, is called once a new connection is up and
	// every live subscription has been restored. It must not block.
	OnReconnected func()
}

// settings are the resolved options shared by Dial and FromChannel.
type settings struct {
	exchange     string
	prefetch     int
	setPrefetch  bool
	queueArgs    amqp091.Table
	maxPayload   int
	maxMessage   int // 0: no bound
	queueBytes   int
	heartbeat    time.Duration
	dialTimeout  time.Duration
	minBackoff   time.Duration
	maxBackoff   time.Duration
	onLost       func(error)
	onReconnect  func()
	passive      bool
	ownsChannels bool
}

// resolve applies the defaults.
func (c *Config) resolve() settings {
	s := settings{
		exchange:    c.Exchange,
		prefetch:    c.Prefetch,
		setPrefetch: true,
		queueArgs:   c.QueueArgs,
		maxPayload:  c.MaxPayload,
		maxMessage:  c.MaxMessageSize,
		queueBytes:  c.QueueBytes,
		heartbeat:   c.Heartbeat,
		dialTimeout: c.DialTimeout,
		minBackoff:  c.MinBackoff,
		maxBackoff:  c.MaxBackoff,
		onLost:      c.OnConnectionLost,
		onReconnect: c.OnReconnected,
	}
	s.fillDefaults()
	return s
}

func (s *settings) fillDefaults() {
	if s.exchange == "" {
		s.exchange = DefaultExchange
	}
	s.passive = strings.HasPrefix(s.exchange, "amq.")
	if s.prefetch <= 0 {
		s.prefetch = DefaultPrefetch
	}
	if s.maxPayload <= 0 {
		s.maxPayload = DefaultMaxPayload
	}
	switch {
	case s.maxMessage == 0:
		s.maxMessage = DefaultMaxMessageSize
	case s.maxMessage < 0:
		s.maxMessage = 0
	}
	if s.queueBytes <= 0 {
		s.queueBytes = DefaultQueueBytes
	}
	if s.heartbeat <= 0 {
		s.heartbeat = DefaultHeartbeat
	}
	if s.dialTimeout <= 0 {
		s.dialTimeout = defaultDialTimeout
	}
	if s.minBackoff <= 0 {
		s.minBackoff = defaultMinBackoff
	}
	if s.maxBackoff < s.minBackoff {
		s.maxBackoff = max(defaultMaxBackoff, s.minBackoff)
	}
}
