package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/transport"
)

// Paths of the probes.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
	MetricsPath = "/metrics"
)

// ReadinessConfig configures a Readiness.
type ReadinessConfig struct {
	// Check runs the checks; normally (*c2.Service).Health, which pings
	// the database, checks an SQLite file for damage, counts the outbox
	// and publishes a probe the broker must acknowledge, each within
	// timeout.
	Check func(ctx context.Context, timeout time.Duration) c2.Health
	// Broker says whether a broker is configured; without one only the
	// database counts (commands wait in the outbox by design).
	Broker bool
	// Timeout bounds each check (2 s); Interval is the time between
	// rounds (5 s).
	Timeout, Interval time.Duration
	// Logger hears every change of a check, once per change (nil: none).
	Logger *slog.Logger
	// OnChange is called with the new readiness each time it changes, and
	// once after the first round (the gRPC health status follows it).
	OnChange func(ready bool)
}

// Readiness checks the database and the broker in the background, on a
// schedule and at once when the broker connection changes, and serves the
// result: /readyz answers from the last round, so a probe never waits
// for a database that hangs and a flood of probes costs nothing.
type Readiness struct {
	cfg   ReadinessConfig
	log   *slog.Logger
	gauge *prometheus.GaugeVec
	kick  chan struct{}

	mu         sync.Mutex
	checked    bool  // a round finished
	db, broker error // the last round's results
	brokerDown error // from the connection events, nil while connected
	ready      bool
	reported   bool // OnChange was called
}

// NewReadiness returns a Readiness; Run starts its checks.
func NewReadiness(cfg ReadinessConfig) *Readiness {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Readiness{cfg: cfg, log: log, kick: make(chan struct{}, 1),
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "ready",
			Help: "1 when the last readiness check of the database or the broker passed, 0 when it failed.",
		}, []string{"check"})}
}

// Describe implements prometheus.Collector.
func (r *Readiness) Describe(ch chan<- *prometheus.Desc) { r.gauge.Describe(ch) }

// Collect implements prometheus.Collector.
func (r *Readiness) Collect(ch chan<- prometheus.Metric) { r.gauge.Collect(ch) }

// Run checks at once, then every Interval and after each change of the
// broker connection, until ctx ends.
func (r *Readiness) Run(ctx context.Context) {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		r.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.kick:
		}
	}
}

// ConnectionChanged is the broker's connection listener: a lost
// connection makes C2 not ready at once, a new one starts a check.
func (r *Readiness) ConnectionChanged(ev transport.ConnectionEvent) {
	var down error
	if ev.State != transport.Connected {
		down = errors.New("broker connection lost")
		if ev.Err != nil {
			down = ev.Err
		}
	}
	r.update(func() { r.brokerDown = down })
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// round runs the checks once and records them.
func (r *Readiness) round(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*r.cfg.Timeout)
	defer cancel()
	h := r.cfg.Check(ctx, r.cfg.Timeout)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return // stopping: not a result
	}
	broker := h.Transport
	if !r.cfg.Broker {
		broker = nil
	}
	r.update(func() { r.db, r.broker, r.checked = h.Database, broker, true })
}

// update applies change to the state and reports what changed: logs once
// per change of a check, the gauges, and OnChange. Everything happens
// under r.mu, so reports keep the order of changes.
func (r *Readiness) update(change func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prevDB, prevBroker := r.db, r.effectiveBroker()
	change()
	if !r.checked {
		return // nothing to say before the first round
	}
	nowBroker := r.effectiveBroker()
	r.report("database", prevDB, r.db)
	if r.cfg.Broker {
		r.report("broker", prevBroker, nowBroker)
	}
	ready := r.db == nil && nowBroker == nil
	if ready == r.ready && r.reported {
		return
	}
	r.ready, r.reported = ready, true
	if r.cfg.OnChange != nil {
		r.cfg.OnChange(ready)
	}
}

// effectiveBroker is the broker's state: the last round's, or the lost
// connection the transport reported since. r.mu is held.
func (r *Readiness) effectiveBroker() error {
	if !r.cfg.Broker {
		return nil
	}
	if r.broker != nil {
		return r.broker
	}
	return r.brokerDown
}

// Ready reports the readiness of the last round (false before the first).
func (r *Readiness) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// Healthz answers 200 while the process serves: liveness, with no check
// of the database or the broker (a restart would not fix them).
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		probeAnswer(w, http.StatusOK, "ok")
	})
}

// Readyz answers 200 when the last round found the database and the
// broker available, 503 otherwise (and before the first round). The body
// says nothing more: the reasons are in the log.
func (r *Readiness) Readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if r.Ready() {
			probeAnswer(w, http.StatusOK, "ready")
			return
		}
		probeAnswer(w, http.StatusServiceUnavailable, "not ready")
	})
}

func probeAnswer(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// report logs a check's change and sets its gauge.
func (r *Readiness) report(check string, prev, now error) {
	if now != nil {
		r.gauge.WithLabelValues(check).Set(0)
	} else {
		r.gauge.WithLabelValues(check).Set(1)
	}
	switch {
	case prev == nil && now != nil:
		r.log.Warn(check+" unavailable: not ready", "err", now)
	case prev != nil && now == nil:
		r.log.Info(check + " available again")
	}
}
