package c2

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// TestEventRulesAcrossReplicas runs two replicas on one PostgreSQL
// database, each with its own monitor (played by ReportAnomaly) that sees
// every message: each replica counts the anomalies it sees against the
// rule (per observer), both reach the threshold, and the topic rotates
// once, not once per replica. An idle device is reported by one replica
// only.
func TestEventRulesAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := testbroker.StartPostgres(t, nil).NewDatabase(t)
	start := time.Date(2027, 5, 3, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	var (
		mu   sync.Mutex
		idle = map[string]int{} // replica -> device_idle events
	)
	replica := func(name string, master []byte) *testEnv {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		env := &testEnv{dbPath: filepath.Join(t.TempDir(), "unused.db"), master: master}
		env.start(t, e4.SymKey, nil, func(c *Config) {
			c.Store, c.Now = st, clock.Now
			c.Automation.Disabled, c.Automation.Owner = true, name
			c.Automation.IdleAfter = 24 * time.Hour
			c.OnEvent = func(e Event) {
				if e.Kind == EventDeviceIdle {
					mu.Lock()
					idle[name]++
					mu.Unlock()
				}
			}
		})
		return env
	}
	master, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, b := replica("a", master), replica("b", master)
	must[TopicInfo](t)(a.svc.AddTopic(ctx, "fleet/x"))
	id := must[AddedClient](t)(a.svc.AddClient(ctx, NewClient{Name: "sensor"})).ID
	if err := a.svc.AddMember(ctx, "fleet/x", id); err != nil {
		t.Fatal(err)
	}
	must[Policy](t)(a.svc.AddPolicy(ctx, Policy{Name: "forged", Kind: TargetTopic, Selector: SelectFilter,
		Pattern: "fleet/#", OnEvent: "anomaly:forged", Threshold: 3, Window: time.Minute}))
	for _, r := range []*testEnv{a, b} {
		tick(t, r.svc) // loads the rule
	}
	forged := func(r *testEnv, n int) {
		for range n {
			r.svc.ReportAnomaly(nil, "fleet/x", "forged", "")
		}
	}
	byRule := func() int { return len(rotations(t, a.svc, store.RotationFilter{Policy: "forged"})) }

	// Two forged messages: below the threshold on both replicas.
	forged(a, 2)
	forged(b, 2)
	clock.Set(start.Add(time.Second))
	tick(t, a.svc)
	tick(t, b.svc)
	if n := byRule(); n != 0 {
		t.Fatalf("%d rotations after two anomalies, threshold 3", n)
	}
	// The third: both monitors see it, both replicas ask for the rotation;
	// it fires once.
	forged(a, 1)
	forged(b, 1)
	clock.Set(start.Add(2 * time.Second))
	tick(t, a.svc)
	tick(t, b.svc)
	tick(t, a.svc)
	if n := byRule(); n != 1 {
		t.Fatalf("%d rotations when both replicas saw three anomalies, want 1", n)
	}

	// The device, heard from at the start, is idle a day later: one
	// replica reports it, once.
	err = a.svc.update(ctx, func(tx store.Tx, _ *events) error {
		ds, err := tx.GetDeviceState(id)
		if err != nil {
			return err
		}
		ds.LastSeen, ds.AcksSeen = start, true
		return tx.PutDeviceState(ds)
	})
	if err != nil {
		t.Fatal(err)
	}
	for at := start.Add(time.Hour); at.Before(start.Add(72 * time.Hour)); at = at.Add(time.Hour) {
		clock.Set(at)
		tick(t, a.svc)
		tick(t, b.svc)
	}
	mu.Lock()
	defer mu.Unlock()
	if idle["a"]+idle["b"] != 1 {
		t.Fatalf("device_idle events by replica: %v, want 1 in all", idle)
	}
}
