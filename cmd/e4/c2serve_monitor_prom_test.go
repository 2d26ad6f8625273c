package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// waitQueryValue waits until Prometheus answers expr with one sample of
// value want.
func waitQueryValue(t *testing.T, ctx context.Context, prom *testbroker.Prometheus, expr string, want float64) {
	t.Helper()
	for {
		samples, err := prom.Query(ctx, expr)
		if err != nil {
			t.Fatalf("%v\n%s", err, prom.Output())
		}
		if len(samples) == 1 && samples[0].Value == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus answers %s with %v, want %v\n%s", expr, samples, want, prom.Output())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitMonitorListening publishes on a topic C2 does not manage (counted
// as ignored, no result moves) until the monitor of the server whose
// metrics are at url counts one more: from then on it hears what is
// published.
func waitMonitorListening(t *testing.T, ctx context.Context, pub *mqtt.Transport, url string) {
	t.Helper()
	before := max(metricValue(t, url, "e4_monitor_ignored_total"), 0)
	for {
		if err := pub.Publish(ctx, "lab/probe", []byte("probe")); err != nil {
			t.Fatal(err)
		}
		if metricValue(t, url, "e4_monitor_ignored_total") > before {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the monitor never counted a message")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestC2ServeMonitorPreviousKeyAfterRestart: a message protected under a
// topic's key before "e4 c2 topic rotate", published after the server was
// restarted, counts as previous_key (a lagging device), not auth_failed:
// the replaced key is in the database, not only in the old process.
func TestC2ServeMonitorPreviousKeyAfterRestart(t *testing.T) {
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	s := startC2ServeArgs(t, []string{"--monitor"}, "E4_C2_METRICS_ADDR="+metricsAddr)
	metrics := "http://" + metricsAddr + "/metrics"
	s.ok("topic", "add", "plant/line-1")
	protected := s.c2(hex.EncodeToString([]byte("21.5")), nil, "message", "protect", "plant/line-1", "--hex")
	if protected.code != 0 {
		t.Fatalf("message protect: %+v", protected)
	}
	lagging, err := hex.DecodeString(strings.TrimSpace(protected.stdout))
	if err != nil {
		t.Fatal(err)
	}
	s.ok("topic", "rotate", "plant/line-1")
	s.stop()
	s.start()
	waitGet(t, nil, "http://"+metricsAddr+"/readyz", http.StatusOK)

	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	pub, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{s.brokerURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	waitMonitorListening(t, ctx, pub, metrics)
	if err := pub.Publish(ctx, "plant/line-1", lagging); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, metrics, `e4_monitor_messages_total{result="previous_key"}`, 1)
	if n := metricValue(t, metrics, `e4_monitor_messages_total{result="auth_failed"}`); n != 0 {
		t.Errorf("auth_failed = %v after the restart, want 0", n)
	}
}

// TestC2ServeMonitorScrapedByPrometheus: "e4 c2 serve --monitor" counts a
// plaintext message published on a topic it manages as not_e4, and a real
// Prometheus server reads the counter going from 0 to 1 through its query
// API at the next scrape, with no other result moving.
func TestC2ServeMonitorScrapedByPrometheus(t *testing.T) {
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	s := startC2ServeArgs(t, []string{"--monitor"}, "E4_C2_METRICS_ADDR="+metricsAddr)
	metrics := "http://" + metricsAddr + "/metrics"
	waitGet(t, nil, "http://"+metricsAddr+"/readyz", http.StatusOK)
	prom := testbroker.StartPrometheus(t, testbroker.PrometheusOptions{Targets: []string{metricsAddr}})
	s.ok("topic", "add", "plant/line-1")

	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	pub, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{s.brokerURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// The monitor subscribes once the server runs: the one plaintext
	// message below must not be published before.
	waitMonitorListening(t, ctx, pub, metrics)
	notE4 := `e4_monitor_messages_total{result="not_e4"}`
	waitQueryValue(t, ctx, prom, notE4, 0)

	if err := pub.Publish(ctx, "plant/line-1", []byte("temperature=21.5C unit=celsius")); err != nil {
		t.Fatal(err)
	}
	waitQueryValue(t, ctx, prom, notE4, 1)
	samples, err := prom.Query(ctx, `sum(e4_monitor_messages_total)`)
	if err != nil || len(samples) != 1 || samples[0].Value != 1 {
		t.Errorf("sum of e4_monitor_messages_total at Prometheus: %v, %v; want 1 (the plaintext only)", samples, err)
	}
}
