package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/e4-iot/e4kit/c2/api"
)

// session is a signed-in browser. Its id is the cookie's value; it lives
// only in this process's memory (a restart signs everyone out).
type session struct {
	id      string
	caller  api.Caller
	csrf    string
	expires time.Time

	mu    sync.Mutex
	flash string // a message for the next page, shown once
}

// takeFlash returns the pending message and clears it.
func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func (s *session) setFlash(msg string) {
	s.mu.Lock()
	s.flash = msg
	s.mu.Unlock()
}

// maxSessions bounds the sessions kept; past it, a sign-in is refused
// until some expire or sign out.
const maxSessions = 10000

// sessions keeps the signed-in browsers.
type sessions struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, byID: make(map[string]*session)}
}

// randomID returns 256 random bits, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("web: the system's random source failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for c; ok is false when too many are open.
// The session never outlives the token's expiry.
func (m *sessions) create(c api.Caller) (*session, bool) {
	now := m.now()
	s := &session{id: randomID(), caller: c, csrf: randomID(), expires: now.Add(m.ttl)}
	if !c.Expires.IsZero() && c.Expires.Before(s.expires) {
		s.expires = c.Expires
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.byID) >= maxSessions {
		m.dropExpired(now)
		if len(m.byID) >= maxSessions {
			return nil, false
		}
	}
	m.byID[s.id] = s
	return s, true
}

// get returns the live session with that id.
func (m *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.byID[id]
	if s == nil {
		return nil
	}
	if !m.now().Before(s.expires) {
		delete(m.byID, id)
		return nil
	}
	return s
}

// end forgets a session.
func (m *sessions) end(id string) {
	m.mu.Lock()
	delete(m.byID, id)
	m.mu.Unlock()
}

// endToken forgets every session signed in with the token named name.
func (m *sessions) endToken(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.byID {
		if s.caller.TokenName == name {
			delete(m.byID, id)
		}
	}
}

func (m *sessions) dropExpired(now time.Time) {
	for id, s := range m.byID {
		if !now.Before(s.expires) {
			delete(m.byID, id)
		}
	}
}

// sameSecret compares two secrets in constant time.
func sameSecret(a, b string) bool {
	return len(a) > 0 && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// signInCode is a single-use, short-lived code that signs a browser in as
// the caller it was made for (the link "e4 dev" prints).
type signInCode struct {
	caller  api.Caller
	expires time.Time
}

// maxSignInCodes bounds the codes waiting to be used.
const maxSignInCodes = 100

// codes keeps the sign-in codes not used yet.
type codes struct {
	now  func() time.Time
	mu   sync.Mutex
	byID map[string]signInCode
}

func (c *codes) add(caller api.Caller, ttl time.Duration) string {
	code := randomID()
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byID) >= maxSignInCodes {
		for k, v := range c.byID {
			if !now.Before(v.expires) || len(c.byID) >= maxSignInCodes {
				delete(c.byID, k)
			}
		}
	}
	c.byID[code] = signInCode{caller: caller, expires: now.Add(ttl)}
	return code
}

// take returns the caller of a code and forgets the code: it works once.
func (c *codes) take(code string) (api.Caller, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.byID[code]
	if !ok {
		return api.Caller{}, false
	}
	delete(c.byID, code)
	return v.caller, c.now().Before(v.expires)
}

// failures slows down the sign-in attempts of an address that failed too
// often: a budget of signInBurst failures, refilled at one per
// signInRefill; past it, sign-ins from that address are refused without a
// check until it refills. Memory is bounded by maxTrackedHosts.
type failures struct {
	now  func() time.Time
	mu   sync.Mutex
	byIP map[string]*failureEntry
}

type failureEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// The sign-in failure budget of one address.
const (
	signInBurst     = 5
	signInRefill    = 10 * time.Second
	maxTrackedHosts = 10000
)

// blocked reports whether host has no failure left.
func (f *failures) blocked(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.byIP[host]
	return e != nil && e.lim.TokensAt(f.now()) < 1
}

// fail counts one failure of host.
func (f *failures) fail(host string) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.byIP[host]
	if e == nil {
		if len(f.byIP) >= maxTrackedHosts {
			f.dropRefilled(now)
		}
		if len(f.byIP) >= maxTrackedHosts {
			// Every tracked address is still failing: keep the newest
			// attacker out by forgetting an arbitrary old one.
			for k := range f.byIP {
				delete(f.byIP, k)
				break
			}
		}
		e = &failureEntry{lim: rate.NewLimiter(rate.Every(signInRefill), signInBurst)}
		f.byIP[host] = e
	}
	e.seen = now
	e.lim.AllowN(now, 1)
}

// dropRefilled forgets the addresses whose budget is full again.
func (f *failures) dropRefilled(now time.Time) {
	full := signInRefill*signInBurst + time.Second
	for k, e := range f.byIP {
		if now.Sub(e.seen) > full {
			delete(f.byIP, k)
		}
	}
}
