// Package inbox is the per-subscription message buffer shared by the
// transport adapters: the delivering side either never waits (Push: a
// message that finds the inbox full is dropped and counted) or waits for
// room (PushWait: the adapter holds its acknowledgement back, so the
// broker keeps the rest), receivers wait with a context, and ending the
// subscription wakes them all.
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
	// room holds one token when a receiver made room while a PushWait
	// waited for it; a PushWait that fills a slot and leaves room behind
	// passes it on to the next one.
	room chan struct{}

	mu      sync.Mutex // guards queue, bytes, ended and pushers
	queue   []*transport.Message
	bytes   int // payload bytes in queue
	ended   bool
	pushers int // PushWait calls waiting for room
	ending  sync.Once
	dropped atomic.Uint64
}

// New returns an inbox holding at most limit messages (0: no limit).
func New(limit int) *Inbox { return NewBounded(limit, 0) }

// NewBounded returns an inbox holding at most limit messages and maxBytes
// bytes of payload (0: no limit). A message larger than maxBytes never
// fits.
func NewBounded(limit, maxBytes int) *Inbox {
	return &Inbox{
		limit: limit, maxBytes: maxBytes,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{}),
	}
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

// PushWait appends m and wakes one receiver, waiting while the inbox is
// full: by count, or by bytes, where a message larger than the byte bound
// still goes in alone, once no payload bytes are buffered (unlike Push,
// which drops it). It reports whether m was appended: false when the
// inbox ended or ctx ended first. Adapters whose protocol lets them hold a
// delivery back (an AMQP acknowledgement, a CoAP notification's) use it
// so that a slow receiver makes the broker keep the next messages instead
// of losing them.
func (in *Inbox) PushWait(ctx context.Context, m *transport.Message) bool {
	in.mu.Lock()
	for !in.ended && !in.fitsLocked(len(m.Payload)) {
		in.pushers++
		in.mu.Unlock()
		stopped := false
		select {
		case <-in.room:
		case <-in.done:
		case <-ctx.Done():
			stopped = true
		}
		in.mu.Lock()
		in.pushers--
		if stopped {
			in.mu.Unlock()
			return false
		}
	}
	if in.ended {
		in.mu.Unlock()
		return false
	}
	in.queue = append(in.queue, m)
	in.bytes += len(m.Payload)
	passOn := in.pushers > 0 && in.roomLocked()
	in.mu.Unlock()
	in.signal()
	if passOn {
		notify(in.room)
	}
	return true
}

// fitsLocked reports whether a payload of n bytes fits now, for PushWait.
func (in *Inbox) fitsLocked(n int) bool {
	if in.limit > 0 && len(in.queue) >= in.limit {
		return false
	}
	return in.maxBytes <= 0 || in.bytes == 0 || in.bytes+n <= in.maxBytes
}

// roomLocked reports whether some message might fit now.
func (in *Inbox) roomLocked() bool {
	return (in.limit <= 0 || len(in.queue) < in.limit) && (in.maxBytes <= 0 || in.bytes < in.maxBytes)
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

func (in *Inbox) signal() { notify(in.wake) }

// notify leaves a token in ch, which holds one at most.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
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
	if in.pushers > 0 {
		notify(in.room)
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
