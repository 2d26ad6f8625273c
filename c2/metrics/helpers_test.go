package metrics_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/metrics"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testutil"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 60 * time.Second

// harness is a C2 service measured the way "e4 c2 serve" measures it: its
// store and transport wrapped, its collectors in one registry.
type harness struct {
	reg    *metrics.Registry
	db     *metrics.Database
	broker *metrics.Broker
	events *metrics.Events
	svc    *c2.Service
	st     store.Store // the instrumented store
	raw    store.Store // the store itself
	tr     transport.Transport
}

// newHarness opens a service on a new SQLite database (st when not nil)
// over the broker at brokerURL ("" for none), and runs its dispatcher
// until the test ends.
func newHarness(t *testing.T, brokerURL string, st store.Store, edit ...func(*c2.Config)) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{reg: metrics.NewRegistry("test"), db: metrics.NewDatabase(), broker: metrics.NewBroker(), events: metrics.NewEvents()}
	if st == nil {
		var err error
		if st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "c2.db")); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { st.Close() })
	h.raw, h.st = st, h.db.Instrument(st)
	if brokerURL != "" {
		tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{brokerURL}, ConnectRetry: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		h.tr = h.broker.Instrument(tr)
	}
	master, _ := seal.GenerateKey()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c2.Config{Mode: e4.SymKey, Store: h.st, Keyring: keys, Transport: h.tr, OnEvent: h.events.Observe,
		Dispatch: c2.DispatchConfig{PollInterval: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}}
	for _, e := range edit {
		e(&cfg)
	}
	h.svc, err = c2.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.reg.Register(h.db, h.broker, h.events, metrics.NewServiceCollector(h.svc, 0)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if h.tr != nil {
		select {
		case <-h.svc.Dispatcher().Listening():
		case err := <-done:
			t.Fatalf("Run: %v", err)
		}
	}
	return h
}

// value returns the value of the sample of name whose labels include
// labels (a counter, a gauge, or a histogram's count), and whether there
// is one.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				return sampleValue(m), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// waitValue waits until the sample's value satisfies ok.
func waitValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		v, found := value(t, reg, name, labels)
		if found && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v (present %v): condition not met in %v", name, labels, v, found, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logBuffer is a slog destination tests read while the code writes.
type logBuffer struct {
	testutil.Buffer
}

func (b *logBuffer) count(s string) int {
	return strings.Count(b.String(), s)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
