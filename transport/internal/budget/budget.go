// Package budget bounds the bytes a subscription buffers, for adapters
// whose delivering side may wait (the broker then holds the rest back).
package budget

import "sync"

// Bytes is a byte budget. The zero value has no room for anything but a
// first message; use New. It is safe for concurrent use.
type Bytes struct {
	max   int
	mu    sync.Mutex
	used  int
	freed chan struct{} // signalled when bytes are released
}

// New returns a budget of max bytes.
func New(max int) *Bytes { return &Bytes{max: max, freed: make(chan struct{}, 1)} }

// Reserve waits until n more bytes fit, and takes them. When nothing is
// reserved any n fits, so that a message larger than the budget still
// passes, alone. It returns false, without taking anything, once done is
// closed.
func (b *Bytes) Reserve(n int, done <-chan struct{}) bool {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		select {
		case <-b.freed:
		case <-done:
			return false
		}
	}
}

// Release gives n bytes back and wakes a waiting Reserve.
func (b *Bytes) Release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// Used returns the bytes reserved.
func (b *Bytes) Used() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
