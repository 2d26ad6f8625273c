package notify

import (
	"errors"
	"slices"
	"testing"

	"github.com/e4-iot/e4kit/transport"
)

func TestListenersReplayLatestThenFollow(t *testing.T) {
	var l Listeners
	var early []transport.ConnectionState
	stopEarly := l.Add(func(ev transport.ConnectionEvent) { early = append(early, ev.State) })
	lost := errors.New("gone")
	l.Emit(transport.ConnectionEvent{State: transport.Connected})
	l.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: lost})

	var late []transport.ConnectionEvent
	stopLate := l.Add(func(ev transport.ConnectionEvent) { late = append(late, ev) })
	if len(late) != 1 || late[0].State != transport.Disconnected || late[0].Err != lost {
		t.Fatalf("a late listener got %v, want the latest event replayed", late)
	}
	stopEarly()
	l.Emit(transport.ConnectionEvent{State: transport.Connected})
	if want := []transport.ConnectionState{transport.Connected, transport.Disconnected}; !slices.Equal(early, want) {
		t.Fatalf("stopped listener got %v, want %v", early, want)
	}
	if len(late) != 2 || late[1].State != transport.Connected {
		t.Fatalf("late listener got %v", late)
	}
	stopLate()
	stopLate() // idempotent
}

func TestListenersFreshHasNothingToReplay(t *testing.T) {
	var l Listeners
	called := false
	l.Add(func(transport.ConnectionEvent) { called = true })
	if called {
		t.Fatal("a listener was called before any event")
	}
}
