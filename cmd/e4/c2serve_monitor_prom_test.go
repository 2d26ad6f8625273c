package main

import (
	"context"
	"fmt"
	"net/http"
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
	// The monitor subscribes once the server runs: probe on a topic C2
	// does not manage (counted as ignored, no result moves) until it
	// hears, so the one plaintext message below is not lost.
	for {
		if err := pub.Publish(ctx, "lab/probe", []byte("probe")); err != nil {
			t.Fatal(err)
		}
		if metricValue(t, metrics, "e4_monitor_ignored_total") >= 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the monitor never counted a message\n%s", s.output)
		case <-time.After(50 * time.Millisecond):
		}
	}
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
