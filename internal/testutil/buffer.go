// Package testutil holds helpers the module's tests share: a buffer
// written by one goroutine and read by the test, and a throwaway PKI. Only
// tests and test helpers import it.
package testutil

import (
	"bytes"
	"sync"
)

// Buffer collects output written from several goroutines (a logger, a
// process's copying goroutine) while a test reads it. The zero value is
// ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
