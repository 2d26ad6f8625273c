package monitor_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// newCheckMonitor returns a monitor that is not run: the tests call Check
// directly.
func newCheckMonitor(t *testing.T, e *env, edit func(*monitor.Config)) *monitor.Monitor {
	t.Helper()
	cfg := monitor.Config{Service: e.svc, Transport: loopback.NewBroker().Connect(), Now: e.clock.Now}
	if edit != nil {
		edit(&cfg)
	}
	m, err := monitor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.notify = m.Notify
	e.mu.Unlock()
	return m
}

func check(t *testing.T, m *monitor.Monitor, topic string, msg []byte, want monitor.Result) {
	t.Helper()
	got, ignored := m.Check(topic, msg)
	if got != want || ignored {
		t.Fatalf("Check(%s): %v (ignored %v), want %v", topic, got, ignored, want)
	}
}

func anomalies(e *env) []c2.Event {
	var out []c2.Event
	for {
		select {
		case ev := <-e.events:
			if ev.Kind == c2.EventAnomaly {
				out = append(out, ev)
			}
		default:
			return out
		}
	}
}

// TestEventsCoalesced: a flood of forgeries gives one event at once and
// one per interval after, with the count; a flood over many topics gives
// at most MaxEventKeys events plus one per result.
func TestEventsCoalesced(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	const topics = 20
	for i := range topics {
		e.addTopic(fmt.Sprintf("sensors/%d", i))
	}
	m := newCheckMonitor(t, e, func(c *monitor.Config) { c.MaxEventKeys = 5 })
	wrong := randomKey(t)
	for range 1000 {
		check(t, m, "sensors/0", protectSK(t, wrong, "x", e.clock.Now()), monitor.AuthFailed)
	}
	if got := anomalies(e); len(got) != 1 || !strings.HasPrefix(got[0].Detail, "auth_failed") {
		t.Fatalf("after 1000 forgeries: %d events %+v, want 1", len(got), got)
	}
	m.FlushEvents()
	if got := anomalies(e); len(got) != 0 {
		t.Fatalf("flush within the interval: %+v, want nothing", got)
	}
	e.clock.advance(monitor.DefaultEventInterval)
	m.FlushEvents()
	got := anomalies(e)
	if len(got) != 1 || !strings.Contains(got[0].Detail, "999 more since") {
		t.Fatalf("flush after the interval: %+v, want one event counting 999 more", got)
	}
	e.clock.advance(3 * monitor.DefaultEventInterval)
	m.FlushEvents()
	if n := m.EventKeys(); n != 0 {
		t.Errorf("%d keys still tracked after two quiet intervals, want 0", n)
	}

	for round := range 50 {
		for i := range topics {
			check(t, m, fmt.Sprintf("sensors/%d", i), protectSK(t, wrong, fmt.Sprint(round), e.clock.Now()), monitor.AuthFailed)
		}
	}
	if got := anomalies(e); len(got) != 6 {
		t.Errorf("1000 forgeries over %d topics with MaxEventKeys 5: %d events, want 6 (5 topics, then one for the others)", topics, len(got))
	}
	if n := m.EventKeys(); n > 6 {
		t.Errorf("%d keys tracked, want at most 6", n)
	}
}

// TestMemoryBounded: the replay set, the top lists, the topic cache and the
// signer cache stay within their bounds however many distinct messages,
// topics and senders come.
func TestMemoryBounded(t *testing.T) {
	e := newEnv(t, e4.PubKey)
	const managed = 30
	for i := range managed {
		e.addTopic(fmt.Sprintf("sensors/%d", i))
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	if _, err := e.svc.AddClient(context.Background(), c2.NewClient{Name: "dev1", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	dev1 := e4.IDFromName("dev1")
	m := newCheckMonitor(t, e, func(c *monitor.Config) {
		c.ReplayCapacity, c.TopK, c.MaxTopics = 100, 5, 50
	})
	keys := make([][]byte, managed)
	for i := range keys {
		keys[i] = e.topicKeys(fmt.Sprintf("sensors/%d", i)).Current
	}
	var first []byte
	for i := range 1000 {
		msg, err := e4.ProtectPubKey(nil, []byte(fmt.Sprint(i)), keys[i%managed], dev1, priv, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if i == 999 {
			first = msg
		}
		check(t, m, fmt.Sprintf("sensors/%d", i%managed), msg, monitor.Valid)
	}
	if n := m.ReplayLen(); n != 100 {
		t.Errorf("replay set holds %d messages, want its capacity, 100", n)
	}
	check(t, m, "sensors/9", first, monitor.Replay) // the latest are still remembered

	// Unknown senders and unmanaged topics, many of each.
	_, ghostPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		ghost := e4.IDFromName(fmt.Sprint("ghost", i))
		msg, err := e4.ProtectPubKey(nil, []byte("x"), keys[0], ghost, ghostPriv, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		check(t, m, "sensors/0", msg, monitor.UnknownSigner)
		if _, ignored := m.Check(fmt.Sprintf("elsewhere/%d", i), msg); !ignored {
			t.Fatal("message on an unmanaged topic was not ignored")
		}
	}
	if n := m.TopicsCached(); n > 50 {
		t.Errorf("%d topics cached, want at most MaxTopics, 50", n)
	}
	if n := m.SignersCached(); n > 50 {
		t.Errorf("%d senders cached, want at most 50", n)
	}
	for _, by := range []string{"topic", "sender"} {
		for _, result := range []string{"all", "anomalies", "valid", "unknown_signer"} {
			top, err := m.MonitorTop(by, result, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(top) > 5 {
				t.Errorf("top %s by %s: %d entries, want at most TopK, 5", result, by, len(top))
			}
		}
	}
	top, _ := m.MonitorTop("sender", "valid", 1)
	if len(top) != 1 || top[0].Key != dev1.String() || top[0].Count != 1000 {
		t.Errorf("top valid sender: %+v, want dev1 with 1000", top)
	}
	if _, err := m.MonitorTop("device", "", 1); err == nil {
		t.Error("MonitorTop by device: no error")
	}
}

// TestRotationAfterRemovalRevokes: a message under the key a member
// removal retired is a failed authentication at once (devices were told to
// drop it), not a lagging device: C2 does not keep that key at all.
func TestRotationAfterRemovalRevokes(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	ctx := context.Background()
	e.addTopic("sensors/a")
	for _, name := range []string{"dev1", "dev2"} {
		if _, err := e.svc.AddClient(ctx, c2.NewClient{Name: name}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.AddMember(ctx, "sensors/a", e4.IDFromName(name)); err != nil {
			t.Fatal(err)
		}
	}
	m := newCheckMonitor(t, e, nil)
	old := e.topicKeys("sensors/a").Current
	check(t, m, "sensors/a", protectSK(t, old, "a", e.clock.Now()), monitor.Valid)
	if err := e.svc.RemoveMember(ctx, "sensors/a", e4.IDFromName("dev2")); err != nil {
		t.Fatal(err)
	}
	if k := e.topicKeys("sensors/a"); k.Version != 2 || k.Previous != nil {
		t.Fatalf("after a removal: version %d, previous key kept %v; want 2, false", k.Version, k.Previous != nil)
	}
	check(t, m, "sensors/a", protectSK(t, old, "b", e.clock.Now()), monitor.AuthFailed)
	evs := anomalies(e)
	if len(evs) != 1 || !strings.Contains(evs[0].Detail, "no key of the topic opens it") {
		t.Errorf("events: %+v, want one saying no key of the topic opens the message", evs)
	}
}

// TestRotationWithoutNotify: a monitor that is not told of a rotation
// reads the keys again when a message under the new key does not open.
func TestRotationWithoutNotify(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	e.addTopic("sensors/a")
	m := newCheckMonitor(t, e, nil)
	e.mu.Lock()
	e.notify = nil
	e.mu.Unlock()
	old := e.topicKeys("sensors/a").Current
	check(t, m, "sensors/a", protectSK(t, old, "a", e.clock.Now()), monitor.Valid)
	if _, err := e.svc.RotateTopic(context.Background(), "sensors/a"); err != nil {
		t.Fatal(err)
	}
	e.clock.advance(2 * time.Second)
	check(t, m, "sensors/a", protectSK(t, e.topicKeys("sensors/a").Current, "b", e.clock.Now()), monitor.Valid)
	check(t, m, "sensors/a", protectSK(t, old, "c", e.clock.Now()), monitor.PreviousKey)
}

// BenchmarkCheck: the monitor's own cost per message (no broker), against
// an e4 client unprotecting the same messages, in one run.
func BenchmarkCheck(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			e := newEnv(b, e4.SymKey)
			e.addTopic("bench/a")
			key := e.topicKeys("bench/a").Current
			// More messages than the replay set holds: each is new again
			// when its turn comes back.
			msgs := make([][]byte, 1<<17)
			payload := make([]byte, size)
			for i := range msgs {
				payload[0], payload[1], payload[2] = byte(i), byte(i>>8), byte(i>>16)
				msgs[i] = protectSK(b, key, string(payload), time.Now())
			}
			var id e4.ID
			c, err := e4.NewSymKeyClient(id, randomKey(b), &e4.Config{ReplayCacheSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			_ = c.SetTopicKey(key, "bench/a")
			b.Run("e4-unprotect", func(b *testing.B) {
				buf := make([]byte, 0, size)
				for i := 0; b.Loop(); i++ {
					if _, err := c.Unprotect(buf, msgs[i%len(msgs)], "bench/a"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("monitor", func(b *testing.B) {
				// A monitor of its own each run: under -count, the replay
				// set of the last run would hold the first messages.
				m, err := monitor.New(monitor.Config{Service: e.svc, Transport: loopback.NewBroker().Connect(), ReplayCapacity: 1 << 15})
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; b.Loop(); i++ {
					if r, _ := m.Check("bench/a", msgs[i%len(msgs)]); r != monitor.Valid {
						b.Fatalf("message %d: %v", i, r)
					}
				}
			})
		})
	}
}

// TestForgeriesTriggerTheREADMERule: the README's event rule, on the
// monitor's auth_failed results, rotates a topic after three forged
// messages the monitor saw, and not before.
func TestForgeriesTriggerTheREADMERule(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	ctx := context.Background()
	e.addTopic("fleet/a")
	if _, err := e.svc.AddPolicy(ctx, c2.Policy{Name: "forged", Kind: c2.TargetTopic, Selector: c2.SelectFilter,
		Pattern: "fleet/#", OnEvent: "anomaly:auth_failed", Threshold: 3, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	tick := func() {
		t.Helper()
		if _, err := e.svc.SchedulerTick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tick() // loads the rules
	m := newCheckMonitor(t, e, func(cfg *monitor.Config) { cfg.EventInterval = time.Nanosecond })
	forge := func() {
		t.Helper()
		e.clock.advance(time.Second) // a new timestamp: not a replay
		check(t, m, "fleet/a", protectSK(t, randomKey(t), "forged", e.clock.Now()), monitor.AuthFailed)
	}
	forge()
	forge()
	tick()
	if v := e.topicKeys("fleet/a").Version; v != 1 {
		t.Fatalf("version %d after two forgeries, want 1", v)
	}
	forge()
	tick()
	if v := e.topicKeys("fleet/a").Version; v != 2 {
		t.Fatalf("version %d after three forgeries within a minute, want 2", v)
	}
}
