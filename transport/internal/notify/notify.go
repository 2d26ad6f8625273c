// Package notify keeps the listeners of an adapter's connection events
// (transport.ConnectionNotifier) and calls them one event at a time.
package notify

import (
	"slices"
	"sync"

	"github.com/e4-iot/e4kit/transport"
)

// Listeners is the set of listeners of one transport. The zero value is
// ready to use; it is safe for concurrent use.
type Listeners struct {
	// emitting serialises Emit, so listeners see one event at a time, in
	// the order Emit was called.
	emitting sync.Mutex

	mu   sync.Mutex // guards next, fns and last
	next int
	fns  map[int]func(transport.ConnectionEvent)
	last *transport.ConnectionEvent // the latest event emitted
}

// Add registers f and returns the function that unregisters it: f is not
// called for the events emitted after stop returns (a call in progress
// finishes). stop may be called from f.
//
// When an event was emitted before, f is first called with the latest one,
// before Add returns: a listener that registers late learns the current
// state. Add must not be called from a listener.
func (l *Listeners) Add(f func(transport.ConnectionEvent)) (stop func()) {
	// Registering under emitting keeps the replay and the later events in
	// order.
	l.emitting.Lock()
	l.mu.Lock()
	if l.fns == nil {
		l.fns = make(map[int]func(transport.ConnectionEvent))
	}
	id := l.next
	l.next++
	l.fns[id] = f
	last := l.last
	l.mu.Unlock()
	if last != nil {
		f(*last)
	}
	l.emitting.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.fns, id)
			l.mu.Unlock()
		})
	}
}

// Emit calls every listener with ev, in registration order.
func (l *Listeners) Emit(ev transport.ConnectionEvent) {
	l.emitting.Lock()
	defer l.emitting.Unlock()
	l.mu.Lock()
	l.last = &ev
	ids := make([]int, 0, len(l.fns))
	for id := range l.fns {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		l.mu.Lock()
		f, ok := l.fns[id]
		l.mu.Unlock()
		if ok {
			f(ev)
		}
	}
}
