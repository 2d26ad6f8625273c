package loopback

import (
	"context"
	"sync"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/internal/inbox"
)

// subscription buffers the messages of one Subscribe call in an inbox that
// the publisher appends to without ever waiting for a receiver.
type subscription struct {
	*inbox.Inbox
	conn   *conn
	filter string
	ending sync.Once
}

func newSubscription(c *conn, filter string) *subscription {
	return &subscription{Inbox: inbox.New(0), conn: c, filter: filter}
}

// push appends a message and wakes one receiver.
func (s *subscription) push(m *transport.Message) { s.Push(m) }

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
		s.End()
	})
}
