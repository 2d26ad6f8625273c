package testutil

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestBufferConcurrent: writes from several goroutines while the test
// reads lose nothing (and, under -race, race with nothing).
func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := b.Write([]byte("x")); err != nil {
					t.Error(err)
				}
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 400) {
		t.Fatalf("buffer holds %d bytes, want 400", len(got))
	}
}

// TestBufferWaitFor: WaitFor returns once a write makes its condition
// true, for several waiters at once, and with ctx's error when the
// condition never holds.
func TestBufferWaitFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b Buffer
		results := make(chan string, 2)
		for range 2 {
			go func() {
				s, err := b.WaitFor(context.Background(), func(s string) bool { return strings.Contains(s, "ready") })
				if err != nil {
					t.Error(err)
				}
				results <- s
			}()
		}
		synctest.Wait()
		if _, err := b.Write([]byte("starting\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(results) != 0 {
			t.Fatal("WaitFor returned before its condition held")
		}
		if _, err := b.Write([]byte("ready\n")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if s := <-results; s != "starting\nready\n" {
				t.Errorf("WaitFor returned %q", s)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if s, err := b.WaitFor(ctx, func(s string) bool { return strings.Contains(s, "never") }); !errors.Is(err, context.DeadlineExceeded) || s != "starting\nready\n" {
			t.Errorf("WaitFor for what never comes: %q, %v", s, err)
		}
	})
}
