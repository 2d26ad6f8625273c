// Package testutil holds helpers the module's tests share: a buffer
// written by one goroutine and read by the test, and a throwaway PKI. Only
// tests and test helpers import it.
package testutil

import (
	"bytes"
	"context"
	"sync"
)

// Buffer collects output written from several goroutines (a logger, a
// process's copying goroutine) while a test reads it or waits for it
// (WaitFor). The zero value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// wake is closed, and set to nil, by the next Write: the waiters of
	// WaitFor look again.
	wake chan struct{}
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits until done reports true for everything written so far,
// looking again after each Write rather than polling, and returns what
// was written then. It returns what was written and ctx's error when ctx
// ends first.
func (b *Buffer) WaitFor(ctx context.Context, done func(written string) bool) (string, error) {
	for {
		b.mu.Lock()
		s := b.buf.String()
		if done(s) {
			b.mu.Unlock()
			return s, nil
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return b.String(), ctx.Err()
		}
	}
}
