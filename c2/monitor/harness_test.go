package monitor_test

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// scrape reads the monitor's metrics as Prometheus would.
type scrape struct {
	results map[string]float64
	skewN   uint64
	skewSum float64
}

func scrapeMetrics(t *testing.T, reg *prometheus.Registry) scrape {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	s := scrape{results: make(map[string]float64)}
	for _, f := range families {
		switch f.GetName() {
		case "e4_monitor_messages_total":
			for _, m := range f.GetMetric() {
				s.results[labelValue(m, "result")] = m.GetCounter().GetValue()
			}
		case "e4_monitor_clock_skew_seconds":
			h := f.GetMetric()[0].GetHistogram()
			s.skewN, s.skewSum = h.GetSampleCount(), h.GetSampleSum()
		}
	}
	if len(s.results) != len(monitor.Results()) {
		t.Fatalf("e4_monitor_messages_total has %d series, want one per result (%d)", len(s.results), len(monitor.Results()))
	}
	return s
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// harness injects messages through a real broker and checks what each one
// moved.
type harness struct {
	t      *testing.T
	e      *env
	sender transport.Transport
	reg    *prometheus.Registry
}

func newHarness(t *testing.T, mode e4.Mode) *harness {
	monConn, sender := startBroker(t)
	e := newEnv(t, mode)
	m := e.startMonitor(monConn, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	return &harness{t: t, e: e, sender: sender, reg: reg}
}

// inject publishes payload on topic and checks that exactly the counter
// of want moved, by one, in the monitor and at a Prometheus scrape, and
// that an anomaly event of that kind (none for valid) about the topic came
// out, naming sender when it is not nil. It returns the event.
func (h *harness) inject(topic string, payload []byte, want monitor.Result, sender *e4.ID) c2.Event {
	return h.injectEvent(topic, payload, want, sender, true)
}

// injectCoalesced is inject for an anomaly that follows another of the
// same kind on the same topic: it is counted, and its event waits for the
// next flush of the coalesced events.
func (h *harness) injectCoalesced(topic string, payload []byte, want monitor.Result) {
	h.injectEvent(topic, payload, want, nil, false)
}

func (h *harness) injectEvent(topic string, payload []byte, want monitor.Result, sender *e4.ID, event bool) c2.Event {
	t := h.t
	t.Helper()
	before := scrapeMetrics(t, h.reg)
	publish(t, h.sender, topic, payload)
	got := h.e.waitChecked()
	if got.topic != topic || got.result != want || got.ignored {
		t.Fatalf("%s: checked %+v, want result %v", topic, got, want)
	}
	after := scrapeMetrics(t, h.reg)
	for _, r := range monitor.Results() {
		diff := after.results[r.String()] - before.results[r.String()]
		wantDiff := 0.0
		if r == want {
			wantDiff = 1
		}
		if diff != wantDiff {
			t.Errorf("%s: e4_monitor_messages_total{result=%q} moved by %v, want %v", topic, r, diff, wantDiff)
		}
	}
	if want == monitor.Valid || !event {
		h.e.noAnomaly()
		return c2.Event{}
	}
	ev := h.e.nextAnomaly()
	if ev.Topic != topic || !strings.HasPrefix(ev.Detail, want.String()) {
		t.Errorf("%s: event %+v, want an anomaly about the topic starting with %q", topic, ev, want)
	}
	switch {
	case sender == nil && ev.Client != nil:
		t.Errorf("%s: event names client %v, want none", topic, *ev.Client)
	case sender != nil && (ev.Client == nil || *ev.Client != *sender):
		t.Errorf("%s: event names client %v, want %v", topic, ev.Client, *sender)
	}
	h.e.noAnomaly()
	return ev
}

// TestAnomalyHarnessSK injects each kind of message over Mosquitto in
// symmetric-key mode, each on its own topic.
func TestAnomalyHarnessSK(t *testing.T) {
	h := newHarness(t, e4.SymKey)
	e := h.e
	for _, topic := range []string{"sensors/valid", "sensors/plain", "sensors/forged", "sensors/ahead", "sensors/old", "sensors/rotated"} {
		e.addTopic(topic)
	}
	key := func(topic string) []byte { return e.topicKeys(topic).Current }

	valid := protectSK(t, key("sensors/valid"), "21.5", e.clock.Now())
	h.inject("sensors/valid", valid, monitor.Valid, nil)
	h.inject("sensors/valid", valid, monitor.Replay, nil)
	h.inject("sensors/plain", []byte("temperature=21.5C sensor=7 unit=celsius"), monitor.NotE4, nil)
	h.injectCoalesced("sensors/plain", []byte("on"), monitor.NotE4)
	h.inject("sensors/forged", protectSK(t, randomKey(t), "open the valve", e.clock.Now()), monitor.AuthFailed, nil)

	before := scrapeMetrics(t, h.reg)
	h.inject("sensors/ahead", protectSK(t, key("sensors/ahead"), "21.5", e.clock.Now().Add(5*time.Minute)), monitor.Future, nil)
	after := scrapeMetrics(t, h.reg)
	if after.skewN != before.skewN+1 || after.skewSum-before.skewSum != 300 {
		t.Errorf("clock skew histogram: %d observations summing %v, want one more of 300 s", after.skewN-before.skewN, after.skewSum-before.skewSum)
	}
	h.inject("sensors/old", protectSK(t, key("sensors/old"), "21.5", e.clock.Now().Add(-11*time.Minute)), monitor.TooOld, nil)

	old := key("sensors/rotated")
	h.inject("sensors/rotated", protectSK(t, old, "before", e.clock.Now()), monitor.Valid, nil)
	if _, err := e.svc.RotateTopic(context.Background(), "sensors/rotated"); err != nil {
		t.Fatal(err)
	}
	h.inject("sensors/rotated", protectSK(t, key("sensors/rotated"), "new key", e.clock.Now()), monitor.Valid, nil)
	ev := h.inject("sensors/rotated", protectSK(t, old, "lagging device", e.clock.Now()), monitor.PreviousKey, nil)
	if !strings.Contains(ev.Detail, "version 1") {
		t.Errorf("previous-key event %q does not name the key version", ev.Detail)
	}
	// After the transition window C2 no longer hands out (nor keeps) the
	// replaced key: a message under it opens under no key of the topic.
	e.clock.advance(e4.DefaultKeyTransition + time.Minute)
	ev = h.inject("sensors/rotated", protectSK(t, old, "after the transition", e.clock.Now()), monitor.AuthFailed, nil)
	if !strings.Contains(ev.Detail, "no key of the topic opens it") || e.topicKeys("sensors/rotated").Previous != nil {
		t.Errorf("auth-failed event %q: want no key of the topic to open it, the previous key no longer given", ev.Detail)
	}

	// A topic C2 does not manage is ignored: no counter moves.
	before = scrapeMetrics(t, h.reg)
	publish(t, h.sender, "sensors/unmanaged", []byte("anything"))
	if got := e.waitChecked(); !got.ignored {
		t.Errorf("message on an unmanaged topic: %+v, want ignored", got)
	}
	if after := scrapeMetrics(t, h.reg); !equalResults(before, after) {
		t.Errorf("a message on an unmanaged topic moved the counters: %v -> %v", before.results, after.results)
	}

	// The per-topic detail through the service, as the API serves it.
	top, err := e.svc.MonitorTop(context.Background(), "topic", "anomalies", 10)
	if err != nil {
		t.Fatal(err)
	}
	// Ties are listed by name.
	if len(top) != 6 || top[0].Key != "sensors/plain" || top[0].Count != 2 || top[1].Key != "sensors/rotated" || top[1].Count != 2 ||
		top[1].ByResult["previous_key"] != 1 || top[1].ByResult["auth_failed"] != 1 || top[5].Key != "sensors/valid" || top[5].ByResult["replay"] != 1 {
		t.Errorf("top topics by anomalies: %+v, want sensors/plain and sensors/rotated (1 previous_key, 1 auth_failed) with 2 each, then the 4 others", top)
	}
	if top, _ := e.svc.MonitorTop(context.Background(), "sender", "all", 10); len(top) != 0 {
		t.Errorf("top senders in SK mode: %+v, want none (SK messages carry no sender)", top)
	}
}

func equalResults(a, b scrape) bool {
	for k, v := range a.results {
		if b.results[k] != v {
			return false
		}
	}
	return true
}

// TestAnomalyHarnessPK injects the public-key kinds over Mosquitto:
// valid, unknown signer, forged signature, wrong topic key, plaintext.
func TestAnomalyHarnessPK(t *testing.T) {
	h := newHarness(t, e4.PubKey)
	e := h.e
	ctx := context.Background()
	for _, topic := range []string{"sensors/pk", "sensors/ghost", "sensors/forged", "sensors/wrongkey", "sensors/plain"} {
		e.addTopic(topic)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	if _, err := e.svc.AddClient(ctx, c2.NewClient{Name: "dev1", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	dev1 := e4.IDFromName("dev1")
	protect := func(topic string, key []byte, sender e4.ID, signer ed25519.PrivateKey) []byte {
		msg, err := e4.ProtectPubKey(nil, []byte("21.5"), key, sender, signer, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	key := func(topic string) []byte { return e.topicKeys(topic).Current }

	h.inject("sensors/pk", protect("sensors/pk", key("sensors/pk"), dev1, priv), monitor.Valid, nil)
	_, ghostPriv, _ := ed25519.GenerateKey(nil)
	ghost := e4.IDFromName("ghost")
	h.inject("sensors/ghost", protect("sensors/ghost", key("sensors/ghost"), ghost, ghostPriv), monitor.UnknownSigner, &ghost)
	h.inject("sensors/forged", protect("sensors/forged", key("sensors/forged"), dev1, ghostPriv), monitor.AuthFailed, &dev1)
	h.inject("sensors/wrongkey", protect("sensors/wrongkey", randomKey(t), dev1, priv), monitor.AuthFailed, &dev1)
	h.inject("sensors/plain", []byte(strings.Repeat("temperature=21.5C sensor=7 ", 5)), monitor.NotE4, nil)

	top, err := e.svc.MonitorTop(ctx, "sender", "all", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 2 || top[0].Key != dev1.String() || top[0].Count != 3 || top[0].ByResult["valid"] != 1 || top[0].ByResult["auth_failed"] != 2 {
		t.Errorf("top senders: %+v, want dev1 (3: 1 valid, 2 auth_failed) then ghost", top)
	}
}
