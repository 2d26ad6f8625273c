package amqp

import (
	"context"
	"fmt"
	"sync"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/internal/inbox"
)

// subscription is one Subscribe call. Its consumer goroutine moves
// deliveries into in and acknowledges each once it is there.
type subscription struct {
	t      *Transport
	filter string
	key    string

	// in holds up to Prefetch messages and QueueBytes of payload; a
	// delivery that does not fit waits, unacknowledged.
	in      *inbox.Inbox
	done    chan struct{} // closed when the subscription ends
	endOnce sync.Once

	// Owned by the supervisor goroutine.
	att     *attachment // current queue and consumer; nil while detached
	pending chan error  // reply of a Subscribe waiting for a reconnection
}

func newSubscription(t *Transport, filter, key string) *subscription {
	return &subscription{
		t:      t,
		filter: filter,
		key:    key,
		in:     inbox.NewBounded(t.set.prefetch, t.set.queueBytes),
		done:   make(chan struct{}),
	}
}

// end stops delivery locally; it reports whether this call ended it.
func (s *subscription) end() bool {
	first := false
	s.endOnce.Do(func() {
		close(s.done)
		s.in.End()
		first = true
	})
	return first
}

func (s *subscription) isEnded() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Receive returns the next message, in the order the queue delivered them.
func (s *subscription) Receive(ctx context.Context) (*transport.Message, error) {
	return s.in.Receive(ctx)
}

// Unsubscribe ends the subscription at once for Receive, then removes its
// consumer and queue from the broker, waiting for the broker until ctx
// ends. It is idempotent.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	if !s.end() {
		return nil
	}
	req := request{kind: unsubscribeRequest, sub: s, reply: make(chan error, 1)}
	if err := s.t.send(ctx, req); err != nil {
		if ctx.Err() != nil {
			go s.t.abandon(s)
			return fmt.Errorf("amqp: unsubscribe %q: %w", s.filter, ctx.Err())
		}
		return nil // the transport is closed: nothing is left on the broker
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		// The supervisor finishes the removal by itself.
		return fmt.Errorf("amqp: unsubscribe %q: %w", s.filter, ctx.Err())
	case <-s.t.done:
		return nil
	}
}

// consume runs for one attachment until its deliveries stop, then tells
// the supervisor if the subscription is still live.
func (s *subscription) consume(att *attachment, deliveries <-chan amqp091.Delivery) {
	for d := range deliveries {
		if !s.deliver(d) {
			// Ended: discard until the consumer is cancelled, so that
			// amqp091 does not hold deliveries for nobody.
			for d := range deliveries {
				_ = d.Reject(false)
			}
			return
		}
	}
	if s.isEnded() {
		return
	}
	select {
	case s.t.requests <- request{kind: consumerLostRequest, sub: s, att: att}:
	case <-s.t.done:
	case <-s.done:
	}
}

// deliver buffers one delivery and acknowledges it; false once the
// subscription has ended.
func (s *subscription) deliver(d amqp091.Delivery) bool {
	topic := TopicFromRoutingKey(d.RoutingKey)
	if transport.ValidateTopic(topic) != nil || !transport.Match(s.filter, topic) {
		// A routing key no canonical topic maps to (another client's
		// "a/b.c", say): it cannot be given a topic, so drop it.
		_ = d.Ack(false)
		return true
	}
	if max := s.t.set.maxMessage; max > 0 && len(d.Body) > max {
		s.t.oversized.Add(1)
		_ = d.Reject(false)
		return true
	}
	// Ends only with the subscription, which ends the inbox too.
	if !s.in.PushWait(context.Background(), &transport.Message{Topic: topic, Payload: d.Body}) {
		_ = d.Reject(false)
		return false
	}
	_ = d.Ack(false)
	return true
}
