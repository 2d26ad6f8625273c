package c2

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// TestIdleDeviceRule: with IdleAfter 30 days, a device not heard from for
// 30 days is reported once per topic (EventDeviceIdle), and an event rule
// on device_idle rotates those topics; a device never heard from is not
// idle, and a restarted scheduler does not report a device again.
func TestIdleDeviceRule(t *testing.T) {
	start := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	var (
		mu   sync.Mutex
		idle []Event
	)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) {
		c.Automation.IdleAfter = 30 * 24 * time.Hour
		c.OnEvent = func(e Event) {
			if e.Kind == EventDeviceIdle {
				mu.Lock()
				idle = append(idle, e)
				mu.Unlock()
			}
		}
	})
	svc := env.svc
	ctx := context.Background()
	var ids []e4.ID
	for i := range 3 {
		ids = append(ids, must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("idle-%d", i)})).ID)
	}
	for _, topic := range []string{"plant/a", "plant/b"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
	}
	if err := svc.AddMembers(ctx, "plant/a", ids); err != nil {
		t.Fatal(err)
	}
	if err := svc.AddMember(ctx, "plant/b", ids[1]); err != nil {
		t.Fatal(err)
	}
	// ids[0] was last heard from at the start, ids[1] 20 days later;
	// ids[2] never.
	heard := func(id e4.ID, at time.Time) {
		err := svc.update(ctx, func(tx store.Tx, _ *events) error {
			ds, err := tx.GetDeviceState(id)
			if err != nil {
				return err
			}
			ds.LastSeen, ds.AcksSeen = at, true
			return tx.PutDeviceState(ds)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	heard(ids[0], start)
	heard(ids[1], start.Add(20*24*time.Hour))
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "idle-member", Kind: TargetTopic, Selector: SelectAll,
		OnEvent: string(EventDeviceIdle), Threshold: 1}))
	byRule := func() map[string]int {
		n := map[string]int{}
		for _, r := range rotations(t, svc, store.RotationFilter{Policy: "idle-member"}) {
			n[r.Target]++
		}
		return n
	}
	for at := start; at.Before(start.Add(40 * 24 * time.Hour)); at = at.Add(6 * time.Hour) {
		clock.Set(at)
		tick(t, svc)
	}
	if n := byRule(); n["plant/a"] != 1 || n["plant/b"] != 0 {
		t.Fatalf("after 40 days (ids[0] idle since day 30): rotations by the rule %v", n)
	}
	for at := clock.Now(); at.Before(start.Add(60 * 24 * time.Hour)); at = at.Add(6 * time.Hour) {
		clock.Set(at)
		tick(t, svc)
	}
	// A restarted scheduler looks again at once: nobody new is idle.
	svc.sched.mu.Lock()
	svc.sched.idleScan = time.Time{}
	svc.sched.mu.Unlock()
	tick(t, svc)
	if n := byRule(); n["plant/a"] != 2 || n["plant/b"] != 1 {
		t.Fatalf("after 60 days (ids[1] idle since day 50): rotations by the rule %v", n)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{ids[0].String() + " plant/a": true, ids[1].String() + " plant/a": true, ids[1].String() + " plant/b": true}
	if len(idle) != len(want) {
		t.Fatalf("idle events %+v, want one for each of %v", idle, want)
	}
	for _, e := range idle {
		if e.Client == nil || !want[e.Client.String()+" "+e.Topic] {
			t.Fatalf("idle events %+v, want one for each of %v", idle, want)
		}
	}
}
