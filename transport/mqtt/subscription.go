package mqtt

import (
	"context"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/internal/inbox"
)

// DefaultQueueSize is the number of messages a subscription buffers when
// Config.QueueSize is 0.
const DefaultQueueSize = 10000

// Subscription is the transport.Subscription of the MQTT adapter. Each one
// has its own buffer, filled by paho's delivery goroutine without ever
// waiting: when a consumer stops receiving and its buffer is full, further
// messages for it are dropped (and counted by Dropped) rather than stalling
// the connection, which would stop every other subscription and the
// keep-alive. The broker has acknowledged such messages already.
type Subscription struct {
	t      *Transport
	filter string

	// via is the broker subscription whose messages this one takes
	// (guarded by t.mu): during a change of broker subscriptions two of
	// them may cover the filter, and only one of them must deliver. A new
	// subscription has none yet and takes those of pending, the broker
	// subscription being made for it.
	via, pending string

	// in buffers the messages for Receive.
	in *inbox.Inbox
}

func newSubscription(t *Transport, filter string, limit, maxBytes int) *Subscription {
	return &Subscription{
		t:      t,
		filter: filter,
		in:     inbox.NewBounded(limit, maxBytes),
	}
}

// Filter returns the filter the subscription was made with.
func (s *Subscription) Filter() string { return s.filter }

// Dropped returns how many messages for this subscription were discarded:
// because its buffer was full (Config.QueueSize, Config.QueueBytes), or
// because they were larger than Config.MaxMessageSize.
func (s *Subscription) Dropped() uint64 { return s.in.Dropped() }

// takes reports whether s takes the messages paho routes for the broker
// subscription remote ("" for messages no route took). Guarded by t.mu.
func (s *Subscription) takes(remote string) bool {
	switch {
	case remote == "":
		return true
	case s.via != "":
		return s.via == remote
	default:
		return s.pending == remote
	}
}

// push appends a message without blocking and wakes one receiver.
func (s *Subscription) push(m *transport.Message) { s.in.Push(m) }

// Receive returns the oldest buffered message, waiting for one if needed.
func (s *Subscription) Receive(ctx context.Context) (*transport.Message, error) {
	return s.in.Receive(ctx)
}

// Unsubscribe ends the subscription at once (buffered messages are dropped,
// pending receives return transport.ErrClosed), then removes or narrows the
// broker subscription it used, waiting for the broker until ctx ends. It is
// idempotent.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	if !s.end() {
		return nil
	}
	return s.t.forget(ctx, s)
}

// end marks the subscription ended and wakes every receiver; it reports
// whether this call ended it.
func (s *Subscription) end() bool { return s.in.End() }
