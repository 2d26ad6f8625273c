package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

func msg(i int) *transport.Message {
	return &transport.Message{Topic: "t", Payload: []byte(fmt.Sprint(i))}
}

func TestOrderAndLimit(t *testing.T) {
	in := New(3)
	for i := range 5 {
		in.Push(msg(i))
	}
	if in.Dropped() != 2 {
		t.Fatalf("Dropped() = %d, want 2", in.Dropped())
	}
	for i := range 3 {
		m, err := in.Receive(context.Background())
		if err != nil || string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d: %v, %v", i, m, err)
		}
	}
}

func TestReceiveWaitsAndEnds(t *testing.T) {
	in := New(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := in.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on empty inbox: %v", err)
	}
	got := make(chan error)
	go func() {
		_, err := in.Receive(context.Background())
		got <- err
	}()
	if !in.End() || in.End() {
		t.Fatal("End must report true once, then false")
	}
	if err := <-got; !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("pending Receive after End: %v", err)
	}
	in.Push(msg(1))
	if _, err := in.Receive(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive after End: %v", err)
	}
}

func TestConcurrentReceiversGetEachMessageOnce(t *testing.T) {
	in := New(0)
	const n = 2000
	var wg sync.WaitGroup
	seen := make(chan string, n)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := in.Receive(context.Background())
				if err != nil {
					return
				}
				seen <- string(m.Payload)
			}
		}()
	}
	for i := range n {
		in.Push(msg(i))
	}
	got := map[string]bool{}
	for range n {
		p := <-seen
		if got[p] {
			t.Fatalf("message %s received twice", p)
		}
		got[p] = true
	}
	in.End()
	wg.Wait()
}

func TestByteLimit(t *testing.T) {
	in := NewBounded(0, 10)
	push := func(n int) { in.Push(&transport.Message{Topic: "t", Payload: make([]byte, n)}) }
	push(6)
	push(5)  // 11 bytes: dropped
	push(4)  // 10 bytes: fits
	push(11) // larger than the whole budget: never fits
	if in.Dropped() != 2 || in.Bytes() != 10 {
		t.Fatalf("Dropped() = %d, Bytes() = %d, want 2 and 10", in.Dropped(), in.Bytes())
	}
	if m, err := in.Receive(context.Background()); err != nil || len(m.Payload) != 6 {
		t.Fatalf("first message: %v, %v", m, err)
	}
	push(5) // room again
	if in.Dropped() != 2 || in.Bytes() != 9 {
		t.Fatalf("after a receive: Dropped() = %d, Bytes() = %d, want 2 and 9", in.Dropped(), in.Bytes())
	}
	in.CountDrop()
	if in.Dropped() != 3 {
		t.Fatalf("CountDrop: Dropped() = %d", in.Dropped())
	}
}

// pushInBackground runs PushWait of a payload of n bytes and returns the
// channel its result arrives on.
func pushInBackground(ctx context.Context, in *Inbox, n int) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- in.PushWait(ctx, &transport.Message{Topic: "t", Payload: make([]byte, n)}) }()
	return done
}

// returned reports whether a result arrived on ch, once every goroutine
// of the bubble is blocked.
func returned(ch <-chan bool) (ok, arrived bool) {
	synctest.Wait()
	select {
	case ok = <-ch:
		return ok, true
	default:
		return false, false
	}
}

// TestPushWaitBlocksUntilRoom: PushWait waits while the inbox is full by
// count or by bytes, loses nothing, and goes on once a receiver made room;
// several waiting pushers all get in as room appears.
func TestPushWaitBlocksUntilRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := NewBounded(2, 10)
		ctx := context.Background()
		for range 2 {
			if !in.PushWait(ctx, &transport.Message{Topic: "t", Payload: make([]byte, 1)}) {
				t.Fatal("PushWait into an inbox with room failed")
			}
		}
		first, second := pushInBackground(ctx, in, 1), pushInBackground(ctx, in, 1)
		if _, arrived := returned(first); arrived {
			t.Fatal("PushWait returned while the inbox held its limit of messages")
		}
		for range 2 {
			if _, err := in.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i, ch := range []<-chan bool{first, second} {
			if ok, arrived := returned(ch); !arrived || !ok {
				t.Fatalf("waiting pusher %d after two receives: returned %v, result %v", i, arrived, ok)
			}
		}
		if in.Dropped() != 0 || in.Bytes() != 2 {
			t.Fatalf("Dropped() = %d, Bytes() = %d, want 0 and 2", in.Dropped(), in.Bytes())
		}

		heavy := pushInBackground(ctx, in, 9) // 2 + 9 bytes: over the byte bound
		if _, arrived := returned(heavy); arrived {
			t.Fatal("PushWait returned past the byte bound")
		}
		if _, err := in.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, arrived := returned(heavy); !arrived || !ok {
			t.Fatalf("PushWait after a receive made room for its bytes: returned %v, result %v", arrived, ok)
		}
	})
}

// TestPushWaitLargerThanTheBound: a message larger than the byte bound
// waits for an inbox without payload bytes and then goes in alone, where
// Push would drop it.
func TestPushWaitLargerThanTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := NewBounded(0, 10)
		ctx := context.Background()
		in.PushWait(ctx, &transport.Message{Topic: "t", Payload: make([]byte, 3)})
		huge := pushInBackground(ctx, in, 64)
		if _, arrived := returned(huge); arrived {
			t.Fatal("a message over the byte bound went in beside another one")
		}
		if _, err := in.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, arrived := returned(huge); !arrived || !ok {
			t.Fatalf("the large message into an empty inbox: returned %v, result %v", arrived, ok)
		}
		if m, err := in.Receive(ctx); err != nil || len(m.Payload) != 64 {
			t.Fatalf("Receive: %v, %v, want the 64-byte message", m, err)
		}
	})
}

// TestPushWaitStops: a waiting PushWait gives up, appending nothing, when
// its context ends or the inbox ends.
func TestPushWaitStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := New(1)
		in.Push(msg(0))
		ctx, cancel := context.WithCancel(context.Background())
		byCtx := pushInBackground(ctx, in, 1)
		byEnd := pushInBackground(context.Background(), in, 1)
		if _, arrived := returned(byCtx); arrived {
			t.Fatal("PushWait into a full inbox returned at once")
		}
		cancel()
		if ok, arrived := returned(byCtx); !arrived || ok {
			t.Fatalf("PushWait after its context ended: returned %v, result %v, want false", arrived, ok)
		}
		in.End()
		if ok, arrived := returned(byEnd); !arrived || ok {
			t.Fatalf("PushWait after End: returned %v, result %v, want false", arrived, ok)
		}
		if in.PushWait(context.Background(), msg(1)) {
			t.Fatal("PushWait into an ended inbox reported success")
		}
	})
}
