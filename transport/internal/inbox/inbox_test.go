package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
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
