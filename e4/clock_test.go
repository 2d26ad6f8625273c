package e4

import (
	"testing"
	"time"
)

func TestWallClockFollowsTimeNow(t *testing.T) {
	var c wallClock
	for range 1000 {
		before := time.Now()
		got := c.now()
		after := time.Now()
		if got.Before(before.Add(-time.Millisecond)) || got.After(after.Add(time.Millisecond)) {
			t.Fatalf("wall clock %v outside [%v, %v]", got, before, after)
		}
	}
	// An anchor older than reanchorAfter is replaced, so a step of the
	// system clock is followed: simulate one with an anchor 1 hour off.
	stale := time.Now().Add(-2 * reanchorAfter)
	stale = stale.Add(-time.Hour).Round(0).Add(0) // wall reading only: Since falls back to wall time
	c.anchor.Store(&stale)
	if got := c.now(); time.Since(got).Abs() > time.Second {
		t.Fatalf("stale anchor kept: clock reads %v", got)
	}
}
