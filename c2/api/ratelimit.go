package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters rate limits each caller (token or certificate) on its own.
type limiters struct {
	every rate.Limit
	burst int

	mu   sync.Mutex
	byID map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxLimiters bounds the map; idle entries are dropped when it is full.
const maxLimiters = 10000

func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return &limiters{every: rate.Limit(perSecond), burst: burst, byID: make(map[string]*limiterEntry)}
}

// allow reports whether caller may make one more call now.
func (l *limiters) allow(caller string, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byID[caller]
	if !ok {
		if len(l.byID) >= maxLimiters {
			l.dropIdle(now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(l.every, l.burst)}
		l.byID[caller] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}

// dropIdle forgets callers idle long enough to have a full bucket again.
func (l *limiters) dropIdle(now time.Time) {
	full := time.Duration(float64(l.burst)/float64(l.every)*float64(time.Second)) + time.Second
	for id, e := range l.byID {
		if now.Sub(e.seen) > full {
			delete(l.byID, id)
		}
	}
}
