// Package transporttest is the conformance suite every transport adapter
// must pass, in the manner of go-cloud's pubsub/drivertest: an adapter
// provides a Harness that opens connections to a real broker (and can
// restart it), declares what its protocol cannot do in Features, and calls
// RunConformanceTests. Every test uses topics of its own, so tests do not
// see each other's messages on a shared broker.
//
// WithE4 wraps a harness so that every transport it makes is protected by
// an E4 client (e4transport.Protect): the same suite then checks that E4
// changes nothing an application can observe but the bytes on the wire.
// RunE4WireTests, given the bare harness, checks those bytes: ciphertext on
// the wire, forgeries dropped, C2 commands applied through the adapter.
package transporttest

import (
	"context"
	"testing"

	"github.com/e4-iot/e4kit/transport"
)

// Features says what an adapter's protocol can do. The suite skips, with
// the reason, the tests of a feature the adapter does not have.
type Features struct {
	// Wildcards: filters with "+" and "#" are supported.
	Wildcards bool
	// OrderedPerTopic: messages of one publisher on one topic arrive in
	// the order they were published.
	OrderedPerTopic bool
	// MaxPayload is the largest payload the suite sends (the large-payload
	// test uses it); 64 KiB unless the protocol or peer limits it.
	MaxPayload int
	// BrokerRestart: RestartBroker works, so the suite checks that a live
	// subscription resumes after the broker restarts.
	BrokerRestart bool
	// ConnectionEvents: the transports implement
	// transport.ConnectionNotifier and a broker restart costs them their
	// connection, so the suite checks that they report the loss and the
	// recovery, the latter once their subscriptions are live again.
	ConnectionEvents bool
	// EmptyPayload: a message with no payload bytes is carried as such.
	// Off unless the adapter sets it, since some protocols or brokers
	// give an empty payload a meaning of its own.
	EmptyPayload bool
}

// Harness connects the suite to one adapter and one real broker.
type Harness interface {
	// MakeTransport opens a new, independent connection to the broker.
	// The suite closes it.
	MakeTransport(ctx context.Context) (transport.Transport, error)
	// RestartBroker stops the broker and starts it again on the same
	// address, returning once it accepts connections again.
	RestartBroker(ctx context.Context) error
	// Features describes the adapter.
	Features() Features
	// Close releases what the harness holds (not the broker, which the
	// test package owns).
	Close()
}

// HarnessMaker returns a fresh harness for one test.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// TopicPreparer is implemented by harnesses that must learn about a topic
// before it is used: the E4 wrapper gives each topic a key. The suite calls
// PrepareTopic for every concrete topic a test uses, before making the
// transports of that test.
type TopicPreparer interface {
	PrepareTopic(topic string) error
}
