package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// TestC2ServeMonitor: "e4 c2 serve" with the monitor on (from the
// environment, as E4_C2_MONITOR_*) counts what is published on its topics,
// and "e4 c2 monitor stats" and "monitor top" show it.
func TestC2ServeMonitor(t *testing.T) {
	s := startC2Serve(t, "E4_C2_MONITOR_ENABLED=true", "E4_C2_MONITOR_TOPICS=plant/#")
	s.ok("topic", "add", "plant/a")
	protected := s.c2(hex.EncodeToString([]byte("21.5")), nil, "message", "protect", "plant/a", "--hex")
	if protected.code != 0 {
		t.Fatalf("message protect: %+v", protected)
	}
	msg, err := hex.DecodeString(strings.TrimSpace(protected.stdout))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	pub, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{s.brokerURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	// The monitor subscribes once the server runs: publish plaintext
	// until it is counted, then one protected message.
	stats := func() map[string]uint64 {
		var st struct {
			Results map[string]uint64 `json:"results"`
		}
		out := s.ok("monitor", "stats", "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("monitor stats --json: %v\n%s", err, out)
		}
		return st.Results
	}
	waitFor := func(what string, done func(map[string]uint64) bool, publish func()) map[string]uint64 {
		t.Helper()
		deadline := time.Now().Add(clientTimeout)
		for {
			if publish != nil {
				publish()
			}
			if st := stats(); done(st) {
				return st
			} else if time.Now().After(deadline) {
				t.Fatalf("%s: monitor stats %v", what, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	send := func(payload []byte) func() {
		return func() {
			if err := pub.Publish(ctx, "plant/a", payload); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor("plaintext", func(st map[string]uint64) bool { return st["not_e4"] > 0 }, send([]byte("temperature=21.5C unit=celsius")))
	before := stats()
	send(msg)()
	st := waitFor("protected message", func(st map[string]uint64) bool { return st["valid"] == 1 }, nil)
	if st["not_e4"] != before["not_e4"] || st["auth_failed"] != 0 {
		t.Errorf("after one protected message: %v (before %v)", st, before)
	}
	// The monitor's counters are on the server's /metrics.
	api, _ := s.apiClient(t)
	code, body := httpGet(t, api, "https://"+s.http+"/metrics", s.adminToken(t))
	if code != http.StatusOK || !strings.Contains(body, `e4_monitor_messages_total{result="valid"} 1`+"\n") {
		t.Errorf("/metrics: %d, no e4_monitor_messages_total{result=\"valid\"} 1 in\n%s", code, body)
	}
	if out := s.ok("monitor", "top"); !strings.Contains(out, "plant/a") || !strings.Contains(out, "not_e4=") {
		t.Errorf("monitor top:\n%s", out)
	}
	if out := s.ok("monitor", "top", "--by", "sender"); strings.Contains(out, "plant/a") {
		t.Errorf("monitor top --by sender lists a topic in SK mode:\n%s", out)
	}
	s.fails(nil, "want topic or sender", "monitor", "top", "--by", "device")
}

// TestMonitorWiring: the serve command's monitor hook runs nothing and
// gives no collector when off, refuses to run without a broker, and gives
// the collector of e4_monitor_messages_total when on.
func TestMonitorWiring(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	off := newMonitorWiring(monitorSettings{})
	if err := off.start(ctx, nil, nil, log); err != nil || off.collectors() != nil {
		t.Fatalf("monitor off: start %v, collectors %v", err, off.collectors())
	}
	off.stop()

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c2.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	master, _ := seal.GenerateKey()
	keys, _ := seal.NewKeyring(master)
	svc, err := c2.New(ctx, c2.Config{Mode: e4.SymKey, Store: st, Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	on := newMonitorWiring(monitorSettings{Enabled: true, Topics: []string{"plant/#", " "}})
	if err := on.start(ctx, svc, nil, log); err == nil || !strings.Contains(err.Error(), "--transport") {
		t.Fatalf("monitor without a broker: %v", err)
	}
	if err := on.start(ctx, svc, loopback.NewBroker().Connect(), log); err != nil {
		t.Fatal(err)
	}
	defer on.stop()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(on.collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	if !slices.Contains(names, "e4_monitor_messages_total") || !slices.Contains(names, "e4_monitor_clock_skew_seconds") {
		t.Errorf("metrics: %v", names)
	}
	stats, err := svc.MonitorStats(ctx)
	if err != nil || len(stats.Topics) != 1 || stats.Topics[0] != "plant/#" {
		t.Errorf("monitor stats through the service: %+v, %v; want the filter plant/#", stats, err)
	}
}
