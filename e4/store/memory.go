package store

import "sync"

// Memory is an in-memory Store, for tests and for clients that must not
// touch the disk. It copies on Save and on Load so that callers never share
// a buffer with it or with each other.
type Memory struct {
	mu    sync.Mutex
	state []byte
	saved bool // distinguishes "never saved" from "saved an empty state"
}

// NewMemory returns an empty Memory store; Load reports ErrNotFound until
// the first Save.
func NewMemory() *Memory {
	return &Memory{}
}

// Load returns a copy of the last saved state, or ErrNotFound.
func (m *Memory) Load() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.saved {
		return nil, ErrNotFound
	}
	return append([]byte{}, m.state...), nil
}

// Save stores a copy of state, replacing the previous one.
func (m *Memory) Save(state []byte) error {
	c := append([]byte{}, state...)
	m.mu.Lock()
	defer m.mu.Unlock()
	// The old state holds keys; wipe it rather than leave it to the GC.
	clear(m.state)
	m.state, m.saved = c, true
	return nil
}
