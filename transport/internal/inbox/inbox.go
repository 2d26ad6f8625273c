// Package inbox is the per-subscription message buffer shared by the
// transport adapters: the delivering side never waits, receivers wait with
// a context, and ending the subscription wakes them all.
package inbox

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/e4-iot/e4kit/transport"
)

// Inbox buffers the messages of one subscription. It is safe for
// concurrent use.
type Inbox struct {
	limit    int // most buffered messages; 0 means no limit
	maxBytes int // most buffered payload bytes; 0 means no limit

	// wake holds one token while messages may be waiting; a receiver
	// that takes a message and leaves more behind passes the token on, so
	// concurrent receivers never sleep on a non-empty queue.
	wake chan struct{}
	// done is closed when the inbox ends.
	done chan struct{}

	mu      sync.Mutex // guards queue, bytes and ended
	queue   []*transport.Message
	bytes   int // payload bytes in queue
	ended   bool
	ending  sync.Once
	dropped atomic.Uint64
}

// New returns an inbox holding at most limit messages (0: no limit).
func New(limit int) *Inbox { return NewBounded(limit, 0) }

// NewBounded returns an inbox holding at most limit messages and maxBytes
// bytes of payload (0: no limit). A message larger than maxBytes never
// fits.
func NewBounded(limit, maxBytes int) *Inbox {
	return &Inbox{limit: limit, maxBytes: maxBytes, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Push appends a message without ever waiting and wakes one receiver. A
// message that finds the inbox full, by count or by bytes, is dropped and
// counted; one that finds it ended is discarded.
func (in *Inbox) Push(m *transport.Message) {
	in.mu.Lock()
	switch {
	case in.ended:
		in.mu.Unlock()
		return
	case in.limit > 0 && len(in.queue) >= in.limit,
		in.maxBytes > 0 && in.bytes+len(m.Payload) > in.maxBytes:
		in.mu.Unlock()
		in.dropped.Add(1)
		return
	}
	in.queue = append(in.queue, m)
	in.bytes += len(m.Payload)
	in.mu.Unlock()
	in.signal()
}

// CountDrop counts a message for this inbox that its adapter discarded
// before it could be pushed (one too large, say).
func (in *Inbox) CountDrop() { in.dropped.Add(1) }

// Dropped returns how many messages were discarded: by Push because the
// inbox was full, and by the adapter (CountDrop).
func (in *Inbox) Dropped() uint64 { return in.dropped.Load() }

// Bytes returns the payload bytes buffered.
func (in *Inbox) Bytes() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.bytes
}

func (in *Inbox) signal() {
	select {
	case in.wake <- struct{}{}:
	default: // a token is already waiting
	}
}

// pop takes the oldest message: nil, nil when none waits, ErrClosed once
// the inbox has ended.
func (in *Inbox) pop() (*transport.Message, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ended {
		return nil, transport.ErrClosed
	}
	if len(in.queue) == 0 {
		return nil, nil
	}
	m := in.queue[0]
	in.queue[0] = nil // let the message be collected once received
	in.queue = in.queue[1:]
	in.bytes -= len(m.Payload)
	if len(in.queue) > 0 {
		in.signal()
	}
	return m, nil
}

// Receive returns the oldest buffered message, waiting for one until ctx
// ends (ctx.Err()) or the inbox ends (transport.ErrClosed).
func (in *Inbox) Receive(ctx context.Context) (*transport.Message, error) {
	for {
		m, err := in.pop()
		if err != nil || m != nil {
			return m, err
		}
		select {
		case <-in.wake:
		case <-in.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// End drops the buffered messages and makes every pending and later
// Receive return transport.ErrClosed. It reports whether this call ended
// the inbox, so that callers can release what it stood for exactly once.
func (in *Inbox) End() bool {
	first := false
	in.ending.Do(func() {
		first = true
		in.mu.Lock()
		in.ended = true
		in.queue, in.bytes = nil, 0
		in.mu.Unlock()
		close(in.done)
	})
	return first
}
