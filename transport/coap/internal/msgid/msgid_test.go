package msgid

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

// fakeClock is a time source the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_000_000, 0)} }
func takeAll(t *testing.T, b *Budget, n int) {
	t.Helper()
	for i := range n {
		if wait := b.tryTake(0); wait != 0 {
			t.Fatalf("ID %d of %d refused (wait %v)", i+1, n, wait)
		}
	}
}

// TestFreesIDsAfterTheWindow: once limit IDs are in use, the next
// waits until the second of the oldest has aged a whole window, and not
// earlier.
func TestFreesIDsAfterTheWindow(t *testing.T) {
	clock := newFakeClock()
	b := New(10*time.Second, 5, clock.now)
	takeAll(t, b, 3)
	clock.add(4500 * time.Millisecond)
	takeAll(t, b, 2)
	wait := b.tryTake(0)
	// The first three were taken in second 0, which leaves the ring of 11
	// seconds at second 11: 6.5 s from now.
	if wait != 6500*time.Millisecond {
		t.Fatalf("full budget: wait %v, want 6.5s", wait)
	}
	clock.add(wait - time.Millisecond)
	if b.tryTake(0) == 0 {
		t.Fatal("an ID was reused before its window ended")
	}
	clock.add(time.Millisecond)
	takeAll(t, b, 3) // the three of second 0 are free again
	if b.tryTake(0) == 0 {
		t.Fatal("the two IDs of second 4 were freed with those of second 0")
	}
}

// TestForgetsAfterALongPause: after more than a window of silence
// the whole budget is free again.
func TestForgetsAfterALongPause(t *testing.T) {
	clock := newFakeClock()
	b := New(3*time.Second, 4, clock.now)
	takeAll(t, b, 4)
	clock.add(time.Hour)
	takeAll(t, b, 4)
	if b.tryTake(0) == 0 {
		t.Fatal("budget exceeded after the pause")
	}
}

// TestReserve: data requests stop short of the reserve, which the
// connection's own exchanges can still use.
func TestReserve(t *testing.T) {
	clock := newFakeClock()
	b := New(time.Minute, 10, clock.now)
	for range 8 {
		if b.tryTake(2) != 0 {
			t.Fatal("data request refused under the reserve")
		}
	}
	if b.tryTake(2) == 0 {
		t.Fatal("data request took an ID of the reserve")
	}
	takeAll(t, b, 2)
}

// TestWaitEnds: take returns the context's error or ErrClosed when
// it cannot get an ID.
func TestWaitEnds(t *testing.T) {
	b := New(time.Hour, 1, time.Now)
	if err := b.Take(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Take(ctx, 0, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take with an expiring context: %v", err)
	}
	done := make(chan struct{})
	close(done)
	if err := b.Take(context.Background(), 0, done); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("take on a closed transport: %v", err)
	}
}
