// Package msgid keeps a CoAP endpoint within the Message ID space.
//
// RFC 7252 §4.4 forbids reusing a Message ID with the same endpoint within
// EXCHANGE_LIFETIME (247 s with the default transmission parameters), and
// there are only 65,536 of them: about 250 messages per second from one
// endpoint to another with the default parameters. A peer that remembers the IDs it saw, as go-coap
// and libcoap do, takes a message carrying a remembered ID for a
// retransmission: it answers from its cache and drops the message. Past
// 65,536 publications in 247 s on one connection, the adapter lost
// messages while Publish reported success, and the broker's notifications
// were dropped by observers while acknowledged. Both now count the IDs they
// use with a Budget, and a message that would exceed it waits until an old
// ID has aged out.
package msgid

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

const (
	// ExchangeLifetime is EXCHANGE_LIFETIME with CoAP's default
	// transmission parameters (RFC 7252 §4.8.2).
	ExchangeLifetime = 247 * time.Second

	// Limit is how many messages an endpoint sends to another within an
	// exchange lifetime; the rest of the 65,536 IDs is left for the few
	// messages go-coap sends on its own.
	Limit = 65000

	// ControlReserve is the part of the budget that only the exchanges
	// keeping a connection alive (keepalive pings, observation
	// registrations) may use, so that a burst of data never makes a ping
	// wait and the connection look lost. Data messages pass it to Take.
	ControlReserve = 1000
)

// Budget counts the Message IDs used in the last window, per second.
type Budget struct {
	window time.Duration
	limit  int
	now    func() time.Time
	epoch  time.Time

	mu     sync.Mutex
	counts []uint32 // IDs used in second s sit in counts[s % len(counts)]
	head   int64    // the newest second counted
	total  int      // sum of counts
}

// New allows limit IDs per window, counted with a one-second granularity
// that errs on the side of waiting; now is the clock (time.Now).
func New(window time.Duration, limit int, now func() time.Time) *Budget {
	b := &Budget{now: now}
	b.reset(window, limit)
	return b
}

// Reset forgets the IDs counted and sets a new window and limit; tests use
// it to shorten the 247-second window.
func (b *Budget) Reset(window time.Duration, limit int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reset(window, limit)
}

func (b *Budget) reset(window time.Duration, limit int) {
	seconds := int((window+time.Second-1)/time.Second) + 1
	b.window, b.limit, b.epoch = window, limit, b.now()
	b.counts, b.head, b.total = make([]uint32, seconds), 0, 0
}

// Take uses one ID, waiting while the IDs used in the window have reached
// the limit minus reserve: data messages pass ControlReserve, the
// exchanges the connection depends on 0. It fails when ctx ends or done
// is closed (with transport.ErrClosed).
func (b *Budget) Take(ctx context.Context, reserve int, done <-chan struct{}) error {
	for {
		wait := b.tryTake(reserve)
		if wait == 0 {
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			b.mu.Lock()
			limit, window := b.limit, b.window
			b.mu.Unlock()
			return fmt.Errorf("coap: waiting for a free message ID (at most %d messages per %v to one peer): %w", limit, window, ctx.Err())
		case <-done:
			timer.Stop()
			return transport.ErrClosed
		}
	}
}

// tryTake uses one ID if fewer than the limit minus reserve are in use and
// returns 0, or returns how long to wait before the oldest counted second
// ages out.
func (b *Budget) tryTake(reserve int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	ceiling := b.limit - reserve
	elapsed := b.now().Sub(b.epoch)
	second := int64(elapsed / time.Second)
	b.advance(second)
	n := int64(len(b.counts))
	if b.total < ceiling {
		b.counts[second%n]++
		b.total++
		return 0
	}
	for s := second - n + 1; s <= second; s++ {
		if s >= 0 && b.counts[s%n] > 0 {
			return time.Duration(s+n)*time.Second - elapsed // when second s leaves the ring
		}
	}
	return time.Second // nothing counted: a reserve of the whole limit
}

// advance moves the ring to second, forgetting the seconds that left it.
func (b *Budget) advance(second int64) {
	n := int64(len(b.counts))
	for s := b.head + 1; s <= second && s <= b.head+n; s++ {
		b.total -= int(b.counts[s%n])
		b.counts[s%n] = 0
	}
	b.head = max(b.head, second)
}
