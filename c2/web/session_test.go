package web

import (
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/api"
)

// TestSignInFailuresBounded: the failure table never holds more than
// maxTrackedHosts addresses, and the newest failing address is tracked.
func TestSignInFailuresBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	f := &failures{now: func() time.Time { return now }, byIP: make(map[string]*failureEntry)}
	for i := range maxTrackedHosts + 500 {
		for range signInBurst {
			f.fail(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
		}
	}
	if len(f.byIP) > maxTrackedHosts {
		t.Fatalf("%d addresses tracked", len(f.byIP))
	}
	last := maxTrackedHosts + 499
	if !f.blocked(fmt.Sprintf("10.%d.%d.%d", last>>16, (last>>8)&255, last&255)) {
		t.Fatal("the newest failing address is not slowed down")
	}
	// Its budget refills with time.
	now = now.Add(signInRefill)
	if f.blocked(fmt.Sprintf("10.%d.%d.%d", last>>16, (last>>8)&255, last&255)) {
		t.Fatal("the budget does not refill")
	}
}

// TestSessionsBoundedAndExpire: sessions end at their expiry or their
// token's, and there are never more than maxSessions.
func TestSessionsBoundedAndExpire(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newSessions(time.Hour, func() time.Time { return now })
	short, _ := m.create(api.Caller{TokenName: "short", Expires: now.Add(time.Minute)})
	long, _ := m.create(api.Caller{TokenName: "long"})
	now = now.Add(2 * time.Minute)
	if m.get(short.id) != nil || m.get(long.id) == nil {
		t.Fatal("a session outlived its token, or ended early")
	}
	for range maxSessions {
		m.create(api.Caller{TokenName: "many"})
	}
	if len(m.byID) > maxSessions {
		t.Fatalf("%d sessions", len(m.byID))
	}
	if _, ok := m.create(api.Caller{TokenName: "one-more"}); ok {
		t.Fatal("a session past the bound")
	}
	now = now.Add(2 * time.Hour)
	if _, ok := m.create(api.Caller{TokenName: "after-expiry"}); !ok {
		t.Fatal("expired sessions still count")
	}
	m.endToken("after-expiry")
	if len(m.byID) != 0 {
		t.Fatalf("%d sessions left", len(m.byID))
	}
}
