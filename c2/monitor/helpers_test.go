package monitor_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// clock is a settable clock shared by the service, the monitor and the
// test's senders.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Second).Add(time.Second / 2)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a C2 service on a fresh SQLite database with a monitor.
type env struct {
	t      testing.TB
	clock  *clock
	svc    *c2.Service
	events chan c2.Event
	mon    *monitor.Monitor
	// checked receives every message the monitor counted.
	checked chan checkedMsg
	mu      sync.Mutex
	notify  func(c2.Event)
}

type checkedMsg struct {
	topic   string
	result  monitor.Result
	ignored bool
}

// newEnv opens a service in mode whose events go to env.events (and to
// the monitor, once there is one).
func newEnv(t testing.TB, mode e4.Mode) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), events: make(chan c2.Event, 1024), checked: make(chan checkedMsg, 1<<16)}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c2.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	master, _ := seal.GenerateKey()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = c2.New(ctx, c2.Config{Mode: mode, Store: st, Keyring: keys, Now: e.clock.Now, OnEvent: e.onEvent})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) onEvent(ev c2.Event) {
	e.mu.Lock()
	n := e.notify
	e.mu.Unlock()
	if n != nil {
		n(ev)
	}
	select {
	case e.events <- ev:
	default:
		e.t.Errorf("event buffer full, lost %v", ev)
	}
}

// startMonitor runs a monitor over tr until the test ends.
func (e *env) startMonitor(tr transport.Transport, edit func(*monitor.Config)) *monitor.Monitor {
	e.t.Helper()
	cfg := monitor.Config{Service: e.svc, Transport: tr, Now: e.clock.Now, Filters: []string{"sensors/#"}}
	if edit != nil {
		edit(&cfg)
	}
	m, err := monitor.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	m.SetAfterCheck(func(topic string, r monitor.Result, ignored bool) {
		e.checked <- checkedMsg{topic, r, ignored}
	})
	e.mu.Lock()
	e.notify = m.Notify
	e.mu.Unlock()
	e.svc.SetMonitor(m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("monitor Run: %v", err)
		}
	})
	select {
	case <-m.Ready():
	case err := <-done:
		e.t.Fatalf("monitor Run: %v", err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("monitor not ready after 30 s")
	}
	e.mon = m
	return m
}

// waitChecked waits for the monitor to count the next message.
func (e *env) waitChecked() checkedMsg {
	e.t.Helper()
	select {
	case c := <-e.checked:
		return c
	case <-time.After(30 * time.Second):
		e.t.Fatal("no message checked within 30 s")
	}
	return checkedMsg{}
}

// nextAnomaly returns the next anomaly event, skipping the service's own
// events (topic added, rotated...).
func (e *env) nextAnomaly() c2.Event {
	e.t.Helper()
	for {
		select {
		case ev := <-e.events:
			if ev.Kind == c2.EventAnomaly {
				return ev
			}
		case <-time.After(30 * time.Second):
			e.t.Fatal("no anomaly event within 30 s")
		}
	}
}

// noAnomaly checks that no anomaly event is waiting.
func (e *env) noAnomaly() {
	e.t.Helper()
	for {
		select {
		case ev := <-e.events:
			if ev.Kind == c2.EventAnomaly {
				e.t.Errorf("unexpected anomaly event: %+v", ev)
			}
		default:
			return
		}
	}
}

// topicKeys returns the current and previous key of a topic.
func (e *env) topicKeys(topic string) c2.MonitorKeys {
	e.t.Helper()
	k, err := e.svc.MonitorTopicKeys(context.Background(), topic)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func (e *env) addTopic(name string) {
	e.t.Helper()
	if _, err := e.svc.AddTopic(context.Background(), name); err != nil {
		e.t.Fatal(err)
	}
}

// startBroker starts Mosquitto and returns a connection for the monitor
// and one for the test's senders.
func startBroker(t testing.TB) (monitorConn, senderConn *mqtt.Transport) {
	t.Helper()
	b := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{LargeQueues: true})
	return dialMQTT(t, b.URL()), dialMQTT(t, b.URL())
}

func dialMQTT(t testing.TB, url string) *mqtt.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{url}, QueueSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func publish(t testing.TB, tr transport.Transport, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Publish(ctx, topic, payload); err != nil {
		t.Fatal(err)
	}
}

func randomKey(t testing.TB) []byte {
	k := make([]byte, e4.KeyLen)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func protectSK(t testing.TB, key []byte, payload string, at time.Time) []byte {
	t.Helper()
	msg, err := e4.ProtectSymKey(nil, []byte(payload), key, at)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
