package loopback

import (
	"context"
	"sync"

	"github.com/e4-iot/e4kit/transport"
)

// subscription buffers the messages of one Subscribe call in a queue that
// the publisher appends to without ever waiting for a receiver.
type subscription struct {
	conn   *conn
	filter string

	// wake holds one token while messages may be waiting; a receiver
	// that takes a message and leaves more behind passes the token on, so
	// concurrent receivers never sleep on a non-empty queue.
	wake chan struct{}
	// done is closed when the subscription ends.
	done chan struct{}

	mu     sync.Mutex // guards queue and ended
	queue  []*transport.Message
	ended  bool
	ending sync.Once
}

func newSubscription(c *conn, filter string) *subscription {
	return &subscription{
		conn:   c,
		filter: filter,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// push appends a message and wakes one receiver.
func (s *subscription) push(m *transport.Message) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default: // a token is already waiting
	}
}

// pop takes the oldest message: nil, nil when none waits, ErrClosed once
// the subscription has ended.
func (s *subscription) pop() (m *transport.Message, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, transport.ErrClosed
	}
	if len(s.queue) == 0 {
		return nil, nil
	}
	m = s.queue[0]
	s.queue[0] = nil // let the message be collected once received
	s.queue = s.queue[1:]
	if len(s.queue) > 0 {
		s.signal()
	}
	return m, nil
}

// Receive returns the oldest buffered message, waiting for one if needed.
func (s *subscription) Receive(ctx context.Context) (*transport.Message, error) {
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

// Unsubscribe stops delivery at once, drops the buffered messages and ends
// pending receives. It is idempotent and never waits, so ctx is unused.
func (s *subscription) Unsubscribe(context.Context) error {
	s.conn.forget(s)
	s.end()
	return nil
}

// end detaches the subscription from the broker and wakes every receiver.
func (s *subscription) end() {
	s.ending.Do(func() {
		s.conn.broker.remove(s)
		s.mu.Lock()
		s.ended = true
		s.queue = nil
		s.mu.Unlock()
		close(s.done)
	})
}
