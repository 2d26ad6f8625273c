package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
)

// metricValue reads one sample from the text exposition at url; -1 when
// it is absent.
func metricValue(t *testing.T, url, sample string) float64 {
	t.Helper()
	_, body := httpGet(t, nil, url, "")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// waitMetric waits until the sample at url has value want.
func waitMetric(t *testing.T, url, sample string, want float64) {
	t.Helper()
	deadline := time.Now().Add(clientTimeout)
	for {
		v := metricValue(t, url, sample)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", sample, v, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClientMetrics: "e4 client --metrics-addr" counts the messages it
// decrypted and those it dropped, its sync request, and follows its
// broker connection.
func TestClientMetrics(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	f := newFixture(t)
	sensor, display := f.skDevice("sensor"), f.skDevice("display")
	f.keygen("temp.key", "symmetric")
	f.setTopicKey(sensor, "home/temp", f.path("temp.key"))
	f.setTopicKey(display, "home/temp", f.path("temp.key"))
	addr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	url := "http://" + addr + "/metrics"
	receiver := startClient(t, "display", "--state", display.state, "--broker", m.URL(), "--subscribe", "home/+", "--metrics-addr", addr)
	receiver.waitStderr("e4 client: metrics on http://" + addr + "/metrics")

	runPublisher(t, sensor.state, m.URL(), "home/temp", "21.5 C\nwindow open\n")
	receiver.waitStdout("home/temp: 21.5 C\nhome/temp: window open\n")
	publishRaw(t, openRaw(t, m.URL()), "home/temp", []byte("not an E4 message"))
	receiver.waitStderr("dropped a message on home/temp")

	waitMetric(t, url, "e4_client_messages_received_total", 2)
	waitMetric(t, url, "e4_client_messages_dropped_total", 1)
	waitMetric(t, url, "e4_client_sync_requests_total", 1)
	waitMetric(t, url, "e4_client_broker_connected", 1)
	m.Stop()
	waitMetric(t, url, "e4_client_broker_connected", 0)
	waitMetric(t, url, "e4_client_broker_connection_losses_total", 1)
	if code := receiver.stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, receiver.stderr.String())
	}
}

// TestClientLogLevel: --log-level warn keeps only the problems (a dropped
// message, not "ready"), debug adds the sync requests sent, and an unknown
// level is refused before anything runs.
func TestClientLogLevel(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	f := newFixture(t)
	display := f.skDevice("display")
	f.keygen("temp.key", "symmetric")
	f.setTopicKey(display, "home/temp", f.path("temp.key"))

	chatty := startClient(t, "display", "--state", display.state, "--broker", m.URL(), "--log-level", "debug")
	chatty.waitStderr("e4 client: sent a sync request")
	chatty.stop()

	quiet := launchClient(t, "display", "--state", display.state, "--broker", m.URL(), "--subscribe", "home/+", "--log-level", "warn")
	raw := openRaw(t, m.URL())
	deadline := time.Now().Add(clientTimeout)
	for !strings.Contains(quiet.stderr.String(), "dropped a message on home/temp") {
		if time.Now().After(deadline) || quiet.exited() {
			t.Fatalf("no drop reported:\n%s", quiet.stderr.String())
		}
		publishRaw(t, raw, "home/temp", []byte("not an E4 message"))
		time.Sleep(100 * time.Millisecond)
	}
	quiet.stop()
	if out := quiet.stderr.String(); strings.Contains(out, "ready") || strings.Contains(out, "sync request") {
		t.Fatalf("--log-level warn printed information:\n%s", out)
	}

	r := e4Run(t, "", "client", "--state", f.path("new.state"), "--broker", m.URL(), "--log-level", "loud")
	if r.code == 0 || !strings.Contains(r.stderr, `--log-level "loud": want debug, info, warn or error`) {
		t.Fatalf("--log-level loud: %+v", r)
	}
}
