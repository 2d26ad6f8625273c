// Package transport abstracts publish/subscribe messaging so that E4
// devices and C2 run unchanged over MQTT, CoAP observe or AMQP.
//
// A Transport moves opaque bytes between topics; it does no cryptography,
// and this package does not import the E4 core. Package
// transport/e4transport wraps any Transport with an E4 client: publishing
// protects, receiving unprotects, and C2 commands on the client's control
// topic are applied.
//
// Topic names are canonical: levels separated by "/", as in MQTT. In a
// subscription filter "+" matches exactly one level and "#", as the last
// level, matches any number of levels (zero included). Each adapter maps
// canonical names to its protocol (AMQP routing keys with ".", CoAP resource
// paths) and back, so a message carries the same topic, and therefore the
// same E4 topic key, whatever transport it crossed.
package transport

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// Errors shared by every adapter.
var (
	// ErrClosed is returned by every method called after Close, and by
	// Receive on a subscription that was unsubscribed.
	ErrClosed = errors.New("transport: closed")

	// ErrInvalidTopic reports a topic or filter that is empty, contains an
	// empty level where the adapter forbids one, or uses a wildcard where
	// one is not allowed (publishing) or not supported (see Features).
	ErrInvalidTopic = errors.New("transport: invalid topic")

	// ErrTooLarge reports a payload larger than the adapter can carry.
	ErrTooLarge = errors.New("transport: payload too large")
)

// QoS is the delivery guarantee requested for a publication. Adapters map it
// to what their protocol offers: MQTT uses it as is; AMQP publishes
// persistent messages with publisher confirms for AtLeastOnce and above;
// CoAP sends non-confirmable (AtMostOnce) or confirmable messages.
type QoS byte

// Delivery guarantees, as in MQTT.
const (
	AtMostOnce  QoS = 0
	AtLeastOnce QoS = 1
	ExactlyOnce QoS = 2
)

// PublishOption changes one publication.
type PublishOption func(*PublishOptions)

// PublishOptions is the resolved set of options of one publication.
type PublishOptions struct {
	QoS QoS // default AtLeastOnce
	// Retain asks the broker to keep the message for future subscribers,
	// where the protocol has such a notion (MQTT retained messages).
	Retain bool
}

// WithQoS sets the delivery guarantee of a publication.
func WithQoS(q QoS) PublishOption { return func(o *PublishOptions) { o.QoS = q } }

// WithRetain marks a publication as retained (MQTT).
func WithRetain() PublishOption { return func(o *PublishOptions) { o.Retain = true } }

// ApplyPublishOptions resolves options over the defaults; for adapters.
func ApplyPublishOptions(opts []PublishOption) PublishOptions {
	o := PublishOptions{QoS: AtLeastOnce}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Message is one message received on a subscription.
type Message struct {
	// Topic is the concrete canonical topic the message was published on,
	// never the subscription's filter.
	Topic string
	// Payload is owned by the receiver.
	Payload []byte
}

// Transport is a connection to a publish/subscribe system.
//
// All methods are safe for concurrent use by multiple goroutines.
// Adapters reconnect by themselves after a connection loss and restore
// their subscriptions; while disconnected, Publish blocks until the message
// is handed over or ctx ends.
type Transport interface {
	// Publish sends payload on a concrete topic (no wildcards). It blocks
	// until the message has been handed to the broker with the requested
	// guarantee (for QoS >= AtLeastOnce: until the broker acknowledged
	// it), or ctx ends. The payload may be reused once Publish returns.
	Publish(ctx context.Context, topic string, payload []byte, opts ...PublishOption) error

	// Subscribe starts receiving messages whose topic matches filter. It
	// blocks until the broker has confirmed the subscription or ctx ends;
	// messages published after Subscribe returns are delivered. ctx only
	// bounds the call, not the life of the subscription.
	Subscribe(ctx context.Context, filter string) (Subscription, error)

	// Close releases the connection and ends every subscription. It is
	// idempotent; later calls to any method return ErrClosed.
	Close() error
}

// Subscription delivers the messages of one Subscribe call.
type Subscription interface {
	// Receive blocks until a message arrives, ctx ends (returning
	// ctx.Err()), or the subscription ends (returning ErrClosed). Messages
	// published on one topic by one publisher are received in order where
	// the protocol promises it. Receive may be called from several
	// goroutines; each message goes to one of them.
	Receive(ctx context.Context) (*Message, error)

	// Unsubscribe stops delivery: it blocks until the broker confirmed or
	// ctx ends. Messages already buffered are dropped and pending Receive
	// calls return ErrClosed. It is idempotent.
	Unsubscribe(ctx context.Context) error
}

// ValidateTopic checks a concrete topic for publishing: not empty and free
// of wildcards.
func ValidateTopic(topic string) error {
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return errors.Join(ErrInvalidTopic, errors.New("transport: topic "+quote(topic)+" must be non-empty and have no wildcard"))
	}
	return nil
}

// ValidateFilter checks a subscription filter: not empty, "+" only as a
// whole level, "#" only as the whole last level.
func ValidateFilter(filter string) error {
	if filter == "" {
		return errors.Join(ErrInvalidTopic, errors.New("transport: empty filter"))
	}
	levels := strings.Split(filter, "/")
	for i, level := range levels {
		wild := strings.ContainsAny(level, "+#")
		switch {
		case !wild:
		case level == "+":
		case level == "#" && i == len(levels)-1:
		default:
			return errors.Join(ErrInvalidTopic, errors.New("transport: filter "+quote(filter)+" has a misplaced wildcard"))
		}
	}
	return nil
}

// Match reports whether a concrete topic matches a filter, with MQTT
// semantics ("sport/#" matches "sport" and "sport/tennis/player1").
func Match(filter, topic string) bool {
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			if !fmore && !tmore {
				return true
			}
			// "a/#" also matches "a".
			return !tmore && frest == "#"
		}
		filter, topic = frest, trest
	}
}

func quote(s string) string { return "\"" + s + "\"" }

// ConnectionState is what a ConnectionEvent reports.
type ConnectionState int

// Connection states.
const (
	// Connected: the adapter is connected to the broker and every
	// subscription made before is live at the broker again (after a
	// reconnection, once it subscribed them again).
	Connected ConnectionState = iota + 1
	// Disconnected: the connection is lost; the adapter reconnects by
	// itself. Publish and Subscribe wait meanwhile.
	Disconnected
)

// String returns "connected" or "disconnected".
func (s ConnectionState) String() string {
	switch s {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	}
	return "ConnectionState(" + strconv.Itoa(int(s)) + ")"
}

// ConnectionEvent is one change of an adapter's connection to its broker.
type ConnectionEvent struct {
	State ConnectionState
	// Err is why the connection was lost (Disconnected), when known.
	Err error
}

// ConnectionNotifier is implemented by the adapters that report the
// changes of their connection: the MQTT, AMQP and CoAP adapters made by
// their Dial, and e4transport.Protected when the transport it wraps does.
//
// NotifyConnection registers f, to be called once for every change of the
// connection: a Connected event for the first connection and for every
// reconnection, a Disconnected event for every loss (and, with the
// adapters' ConnectRetry, for a first connection attempt that failed). If
// the transport reported an event before, f is first called, before
// NotifyConnection returns, with the latest one, so a listener that
// registers late learns the current state; earlier events are not
// replayed. stop unregisters f: f is not called for the events after stop
// returns (a call in progress finishes).
//
// Concurrency contract: the adapter calls f from its own goroutines, one
// event at a time (never concurrently with itself or with another listener
// of the same transport) and in the order the adapter saw the changes. f
// must return quickly and must not call the transport's methods
// synchronously (Publish and Subscribe may wait for the very connection
// being reported), nor NotifyConnection: it should hand the work to
// another goroutine. A
// Connected event is delivered after the subscriptions are live again, so
// something published in response to it cannot miss an answer sent to a
// subscription.
type ConnectionNotifier interface {
	NotifyConnection(f func(ConnectionEvent)) (stop func())
}
