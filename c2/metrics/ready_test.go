package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/metrics"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// probe is a Readiness under test, served over HTTP, with its rounds
// counted and its changes recorded.
type probe struct {
	r       *metrics.Readiness
	url     string
	rounds  atomic.Int64
	changes chan bool
	logs    *logBuffer
}

func startProbe(t *testing.T, h *harness, broker bool) *probe {
	t.Helper()
	p := &probe{changes: make(chan bool, 64), logs: &logBuffer{}}
	p.r = metrics.NewReadiness(metrics.ReadinessConfig{
		Check: func(ctx context.Context, timeout time.Duration) c2.Health {
			defer p.rounds.Add(1)
			return h.svc.Health(ctx, timeout)
		},
		Broker: broker, Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
		Logger: p.logs.logger(), OnChange: func(ready bool) { p.changes <- ready },
	})
	h.broker.OnConnection(p.r.ConnectionChanged)
	if err := h.reg.Register(p.r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(p.r.Readyz())
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// waitStatus waits until /readyz answers code, then checks the change
// reported to OnChange.
func (p *probe) waitStatus(t *testing.T, code int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	last := 0
	for {
		resp, err := http.Get(p.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if last = resp.StatusCode; last == code {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answers %d, want %d\n%s", last, code, p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case ready := <-p.changes:
		if ready != (code == http.StatusOK) {
			t.Fatalf("OnChange(%v) with /readyz at %d", ready, code)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("/readyz at %d but OnChange not called", code)
	}
}

// waitRounds waits until n more check rounds ran.
func (p *probe) waitRounds(t *testing.T, n int64) {
	t.Helper()
	target := p.rounds.Load() + n
	deadline := time.Now().Add(waitTimeout)
	for p.rounds.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("%d rounds ran, want %d", p.rounds.Load(), target)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadyzFollowsBrokerAndSQLite: /readyz (and OnChange, which drives
// the gRPC health status) goes 503 when Mosquitto stops and back to 200
// when it returns, then 503 when the SQLite store is closed; each change
// is logged once however many rounds fail, and the gauges follow.
func TestReadyzFollowsBrokerAndSQLite(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	h := newHarness(t, m.URL(), nil)
	p := startProbe(t, h, true)
	reg := h.reg.Prometheus()

	p.waitStatus(t, http.StatusOK)
	waitValue(t, reg, "e4_c2_broker_connected", nil, func(v float64) bool { return v == 1 })

	m.Stop()
	p.waitStatus(t, http.StatusServiceUnavailable)
	waitValue(t, reg, "e4_c2_broker_connected", nil, func(v float64) bool { return v == 0 })
	waitValue(t, reg, "e4_c2_ready", map[string]string{"check": "broker"}, func(v float64) bool { return v == 0 })
	if v, _ := value(t, reg, "e4_c2_broker_connection_losses_total", nil); v < 1 {
		t.Fatalf("connection losses %v after the broker stopped", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p.waitStatus(t, http.StatusOK)
	waitValue(t, reg, "e4_c2_ready", map[string]string{"check": "broker"}, func(v float64) bool { return v == 1 })
	if n := p.logs.count("broker available again"); n != 1 {
		t.Fatalf("broker recovery logged %d times\n%s", n, p.logs)
	}

	if err := h.raw.Close(); err != nil {
		t.Fatal(err)
	}
	p.waitStatus(t, http.StatusServiceUnavailable)
	waitValue(t, reg, "e4_c2_ready", map[string]string{"check": "database"}, func(v float64) bool { return v == 0 })
	p.waitRounds(t, 5)
	if n := p.logs.count("database unavailable"); n != 1 {
		t.Fatalf("the database going away logged %d times over 5 more rounds, want once\n%s", n, p.logs)
	}
	select {
	case ready := <-p.changes:
		t.Fatalf("OnChange(%v) without a change", ready)
	default:
	}
}

// TestReadyzPostgresHungAndStopped: a PostgreSQL server that stops
// answering (SIGSTOP) makes /readyz 503 within the check's timeout rather
// than hanging, 200 once it answers again, and 503 when it is stopped.
func TestReadyzPostgresHungAndStopped(t *testing.T) {
	pg := testbroker.StartPostgres(t, nil)
	st, err := postgres.Open(context.Background(), pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "", st)
	p := startProbe(t, h, false)
	p.waitStatus(t, http.StatusOK)

	if err := pg.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = pg.Resume()
		}
	})
	p.waitStatus(t, http.StatusServiceUnavailable)
	if err := pg.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	p.waitStatus(t, http.StatusOK)
	if n := p.logs.count("database available again"); n != 1 {
		t.Fatalf("recovery logged %d times\n%s", n, p.logs)
	}

	pg.Stop()
	p.waitStatus(t, http.StatusServiceUnavailable)
}

// TestHealthzNeedsNothing: /healthz answers 200 with a fixed body,
// whatever the checks say.
func TestHealthzNeedsNothing(t *testing.T) {
	rec := httptest.NewRecorder()
	metrics.Healthz().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Fatalf("/healthz: %d %q", rec.Code, rec.Body)
	}
}
