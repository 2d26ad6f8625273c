package c2

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

// HealthTopic is where Health publishes its probe. It carries no data.
const HealthTopic = "e4kit/c2/health"

var pendingFilter = CommandFilter{State: CommandPending}

// Health reports the state of the database and the transport.
type Health struct {
	Database  error // nil when the database answered
	Transport error // nil when the broker acknowledged a probe
	Mode      string
	// Pending is how many commands wait in the outbox.
	Pending int64
}

// OK reports whether everything answered.
func (h Health) OK() bool { return h.Database == nil && h.Transport == nil }

// integrityChecker is a store that can look for damage in its database
// file (SQLite: PRAGMA quick_check, which reads every page). A ping and a
// count do not read the pages a damaged file breaks.
type integrityChecker interface {
	CheckIntegrity(ctx context.Context) error
}

// integrityCheckEvery is how long an integrity check result is reused: it
// reads the whole file, and health is polled often.
const integrityCheckEvery = 30 * time.Second

// integrityCache remembers the last integrity check.
type integrityCache struct {
	mu   sync.Mutex
	at   time.Time
	err  error
	done bool
}

// checkIntegrity runs the store's integrity check, at most once per
// integrityCheckEvery.
func (s *Service) checkIntegrity(ctx context.Context) error {
	ic, ok := s.st.(integrityChecker)
	if !ok {
		return nil
	}
	c := &s.integrity
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.done && now.Sub(c.at) < integrityCheckEvery {
		return c.err
	}
	err := ic.CheckIntegrity(ctx)
	if ctx.Err() != nil {
		return err // cut short: not a result to keep
	}
	c.at, c.err, c.done = now, err, true
	return err
}

// Health pings the database, checks its file for damage where the store
// can (SQLite), and publishes a probe that the broker must acknowledge,
// each within timeout (5 s when zero).
func (s *Service) Health(ctx context.Context, timeout time.Duration) Health {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	h := Health{Mode: s.cfg.Mode.String()}
	dbCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.st.Ping(dbCtx); err != nil {
		h.Database = fmt.Errorf("%w: database: %v", ErrUnavailable, err)
	} else if err := s.checkIntegrity(dbCtx); err != nil {
		h.Database = fmt.Errorf("%w: database: %v", ErrUnavailable, err)
	} else if n, err := s.CountCommands(dbCtx, pendingFilter); err != nil {
		h.Database = fmt.Errorf("%w: database: %v", ErrUnavailable, err)
	} else {
		h.Pending = n
	}
	if s.cfg.Transport == nil {
		h.Transport = fmt.Errorf("%w: no transport configured", ErrUnavailable)
		return h
	}
	trCtx, cancel2 := context.WithTimeout(ctx, timeout)
	defer cancel2()
	if err := s.cfg.Transport.Publish(trCtx, HealthTopic, nil, transport.WithQoS(transport.AtLeastOnce)); err != nil {
		h.Transport = fmt.Errorf("%w: transport: %v", ErrUnavailable, err)
	}
	return h
}
