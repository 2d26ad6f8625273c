// Package loopback is an in-process transport.Transport: a Broker in
// memory and connections to it, with the semantics the transport package
// documents (MQTT-style wildcards, per-topic order, Close and Unsubscribe
// ending pending receives with transport.ErrClosed).
//
// It needs no server, so it suits unit tests and examples of code written
// against transport.Transport, including code wrapped by e4transport.Protect:
//
//	b := loopback.NewBroker()
//	dev, c2 := b.Connect(), b.Connect()
//	defer dev.Close()
//	defer c2.Close()
//
// Delivery is synchronous and lossless: when Publish returns, the message is
// in the buffer of every matching subscription of every connection. Each
// subscription buffers without limit, so a subscriber that stops receiving
// holds its messages in memory until it unsubscribes or its connection
// closes; the publisher is never blocked by a slow subscriber.
package loopback

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/e4-iot/e4kit/transport"
)

// Broker routes messages between the connections made by Connect. The zero
// value is not usable; call NewBroker. A Broker is safe for concurrent use.
type Broker struct {
	// mu orders publications: holding it while enqueuing to every
	// subscription gives all subscribers the same order per topic.
	mu       sync.Mutex
	subs     map[*subscription]struct{}
	restarts int
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{subs: make(map[*subscription]struct{})}
}

// Connect opens a new connection to the broker. Close it when done.
func (b *Broker) Connect() transport.Transport {
	return &conn{broker: b, subs: make(map[*subscription]struct{})}
}

// Restart simulates a broker restart. An in-memory broker loses nothing, as
// a broker with persistent sessions would: subscriptions and buffered
// messages survive, and publications running concurrently wait until the
// restart is over. It lets the conformance suite's restart test run against
// loopback.
func (b *Broker) Restart() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.restarts++
}

// Restarts returns how many times Restart was called.
func (b *Broker) Restarts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.restarts
}

// publish hands a copy of payload to every subscription matching topic.
func (b *Broker) publish(topic string, payload []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if transport.Match(s.filter, topic) {
			// Each receiver owns its payload, so one cannot change what
			// another reads.
			s.push(&transport.Message{Topic: topic, Payload: slices.Clone(payload)})
		}
	}
}

func (b *Broker) add(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[s] = struct{}{}
}

func (b *Broker) remove(s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
}

// conn is one connection to a Broker.
type conn struct {
	broker *Broker

	mu     sync.Mutex // guards closed and subs
	closed bool
	subs   map[*subscription]struct{}
}

// Publish delivers payload to every matching subscription before it
// returns. Options are accepted and ignored: delivery is always exactly
// once, and loopback keeps no retained messages.
func (c *conn) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	if err := c.check(ctx, "publish", topic); err != nil {
		return err
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return fmt.Errorf("loopback: publish: %w", err)
	}
	c.broker.publish(topic, payload)
	return nil
}

// Subscribe registers a subscription; messages published after it returns
// are delivered to it.
func (c *conn) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	if err := c.check(ctx, "subscribe", filter); err != nil {
		return nil, err
	}
	if err := transport.ValidateFilter(filter); err != nil {
		return nil, fmt.Errorf("loopback: subscribe: %w", err)
	}
	s := newSubscription(c, filter)
	c.mu.Lock()
	if c.closed {
		// Close ran since check: do not leave a subscription it missed.
		c.mu.Unlock()
		return nil, fmt.Errorf("loopback: subscribe %q: %w", filter, transport.ErrClosed)
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	c.broker.add(s)
	return s, nil
}

// Close ends every subscription of the connection. It is idempotent.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for s := range subs {
		s.end()
	}
	return nil
}

// check refuses an operation on a closed connection or with an ended ctx.
func (c *conn) check(ctx context.Context, op, topic string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("loopback: %s %q: %w", op, topic, err)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("loopback: %s %q: %w", op, topic, transport.ErrClosed)
	}
	return nil
}

// forget removes an unsubscribed subscription from its connection.
func (c *conn) forget(s *subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, s)
}
