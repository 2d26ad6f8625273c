package mqtt

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/e4-iot/e4kit/transport"
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
	limit  int

	// via is the broker subscription whose messages this one takes
	// (guarded by t.mu): during a change of broker subscriptions two of
	// them may cover the filter, and only one of them must deliver. A new
	// subscription has none yet and takes those of pending, the broker
	// subscription being made for it.
	via, pending string

	// wake holds one token while messages may be waiting; a receiver
	// that takes a message and leaves more behind passes it on.
	wake chan struct{}
	// done is closed when the subscription ends.
	done chan struct{}

	mu      sync.Mutex // guards queue and ended
	queue   []*transport.Message
	ended   bool
	ending  sync.Once
	dropped atomic.Uint64
}

func newSubscription(t *Transport, filter string, limit int) *Subscription {
	return &Subscription{
		t:      t,
		filter: filter,
		limit:  limit,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// Filter returns the filter the subscription was made with.
func (s *Subscription) Filter() string { return s.filter }

// Dropped returns how many messages were discarded because the buffer was
// full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

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
func (s *Subscription) push(m *transport.Message) {
	s.mu.Lock()
	switch {
	case s.ended:
		s.mu.Unlock()
		return
	case len(s.queue) >= s.limit:
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default: // a token is already waiting
	}
}

// pop takes the oldest message: nil, nil when none waits, ErrClosed once
// the subscription has ended.
func (s *Subscription) pop() (*transport.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, transport.ErrClosed
	}
	if len(s.queue) == 0 {
		return nil, nil
	}
	m := s.queue[0]
	s.queue[0] = nil // let the message be collected once received
	s.queue = s.queue[1:]
	if len(s.queue) > 0 {
		s.signal()
	}
	return m, nil
}

// Receive returns the oldest buffered message, waiting for one if needed.
func (s *Subscription) Receive(ctx context.Context) (*transport.Message, error) {
	for {
		m, err := s.pop()
		if err != nil || m != nil {
			return m, err
		}
		select {
		case <-s.wake:
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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
func (s *Subscription) end() bool {
	first := false
	s.ending.Do(func() {
		first = true
		s.mu.Lock()
		s.ended = true
		s.queue = nil
		s.mu.Unlock()
		close(s.done)
	})
	return first
}
