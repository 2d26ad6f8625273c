package monitor_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// openService opens a C2 service in SK mode on st, sealed under master,
// on clk. The caller closes st.
func openService(t *testing.T, st store.Store, master []byte, clk *clock) *c2.Service {
	t.Helper()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c2.New(context.Background(), c2.Config{Mode: e4.SymKey, Store: st, Keyring: keys, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// bareMonitor is a monitor of svc that is not run (the tests call Check)
// and that no rotation is reported to.
func bareMonitor(t *testing.T, svc *c2.Service, clk *clock) *monitor.Monitor {
	t.Helper()
	m, err := monitor.New(monitor.Config{Service: svc, Transport: loopback.NewBroker().Connect(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func currentKey(t *testing.T, svc *c2.Service, topic string) []byte {
	t.Helper()
	k, err := svc.MonitorTopicKeys(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return k.Current
}

// TestPreviousKeyAfterRestart: a C2 restarted on the same database after a
// rotation still tells a lagging device (previous_key) from a forgery,
// and still refuses the key a member removal revoked.
func TestPreviousKeyAfterRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c2.db")
	master, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()

	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	svc := openService(t, st, master, clk)
	for _, topic := range []string{"sensors/rotated", "sensors/removed"} {
		if _, err := svc.AddTopic(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"dev1", "dev2"} {
		if _, err := svc.AddClient(ctx, c2.NewClient{Name: name}); err != nil {
			t.Fatal(err)
		}
		if err := svc.AddMember(ctx, "sensors/removed", e4.IDFromName(name)); err != nil {
			t.Fatal(err)
		}
	}
	rotatedOld, removedOld := currentKey(t, svc, "sensors/rotated"), currentKey(t, svc, "sensors/removed")
	if _, err := svc.RotateTopic(ctx, "sensors/rotated"); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemoveMember(ctx, "sensors/removed", e4.IDFromName("dev2")); err != nil {
		t.Fatal(err) // rotates sensors/removed, revoking its key
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	clk.advance(time.Minute)
	st, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc = openService(t, st, master, clk)
	m := bareMonitor(t, svc, clk)
	check(t, m, "sensors/rotated", protectSK(t, rotatedOld, "lagging", clk.Now()), monitor.PreviousKey)
	check(t, m, "sensors/rotated", protectSK(t, currentKey(t, svc, "sensors/rotated"), "current", clk.Now()), monitor.Valid)
	check(t, m, "sensors/rotated", protectSK(t, randomKey(t), "forged", clk.Now()), monitor.AuthFailed)
	check(t, m, "sensors/removed", protectSK(t, removedOld, "removed device", clk.Now()), monitor.AuthFailed)
	res := m.MonitorStats().Results
	if res["previous_key"] != 1 || res["valid"] != 1 || res["auth_failed"] != 2 {
		t.Errorf("counters after the restart: %v, want 1 previous_key, 1 valid, 2 auth_failed", res)
	}
}

// TestPreviousKeyAcrossReplicas: two C2 services on one PostgreSQL
// database; service A rotates a topic, and the monitor attached to service
// B, which was told of nothing, counts a message under the replaced key as
// previous_key once it has read the topic's keys again.
func TestPreviousKeyAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := testbroker.StartPostgres(t, nil).NewDatabase(t)
	master, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	open := func() *c2.Service {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return openService(t, st, master, clk)
	}
	a, b := open(), open()
	if _, err := a.AddTopic(ctx, "sensors/a"); err != nil {
		t.Fatal(err)
	}
	m := bareMonitor(t, b, clk)
	old := currentKey(t, a, "sensors/a")
	check(t, m, "sensors/a", protectSK(t, old, "before", clk.Now()), monitor.Valid)

	if _, err := a.RotateTopic(ctx, "sensors/a"); err != nil {
		t.Fatal(err)
	}
	// B's monitor holds the keys it read before the rotation; a message
	// under the new key that does not open makes it read them again (more
	// than a second after it last did).
	clk.advance(2 * time.Second)
	check(t, m, "sensors/a", protectSK(t, currentKey(t, a, "sensors/a"), "new key", clk.Now()), monitor.Valid)
	check(t, m, "sensors/a", protectSK(t, old, "lagging", clk.Now()), monitor.PreviousKey)

	// A second monitor on B, started after the rotation, knows it at once.
	fresh := bareMonitor(t, b, clk)
	check(t, fresh, "sensors/a", protectSK(t, old, "lagging again", clk.Now()), monitor.PreviousKey)
}

// TestMonitorWindowShorterThanC2s: a monitor whose key-transition window
// is shorter than C2's counts a message under the previous key after its
// own window as auth_failed, and says why.
func TestMonitorWindowShorterThanC2s(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	e.addTopic("sensors/a")
	m := newCheckMonitor(t, e, func(cfg *monitor.Config) { cfg.KeyTransition = 10 * time.Minute })
	old := e.topicKeys("sensors/a").Current
	if _, err := e.svc.RotateTopic(context.Background(), "sensors/a"); err != nil {
		t.Fatal(err)
	}
	check(t, m, "sensors/a", protectSK(t, old, "a", e.clock.Now()), monitor.PreviousKey)
	e.clock.advance(11 * time.Minute)
	if e.topicKeys("sensors/a").Previous == nil {
		t.Fatal("C2 no longer gives the previous key 11 minutes after the rotation (its window is 60)")
	}
	anomalies(e) // the previous_key event
	check(t, m, "sensors/a", protectSK(t, old, "b", e.clock.Now()), monitor.AuthFailed)
	if evs := anomalies(e); len(evs) != 1 || !strings.Contains(evs[0].Detail, "after its transition window") {
		t.Errorf("events: %+v, want one saying the transition window is over", evs)
	}
}
