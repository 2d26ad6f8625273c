package c2

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

const week = 7 * 24 * time.Hour

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newClockedService is a service without transport whose clock the test
// moves; its scheduler runs only when the test ticks it.
func newClockedService(t *testing.T, mode e4.Mode, start time.Time, edit ...func(*Config)) (*testEnv, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: start}
	edits := append([]func(*Config){func(c *Config) {
		c.Now = clock.Now
		c.Automation.Disabled = true
		c.Automation.Owner = "test"
	}}, edit...)
	return newTestService(t, mode, nil, edits...), clock
}

// twoKeyExample sets up the product's example: every device reads
// firmware and configuration updates under one key and writes analytics
// data under another, both rotated every week.
func twoKeyExample(t *testing.T, svc *Service, devices int) {
	t.Helper()
	ctx := context.Background()
	for _, topic := range []string{"fleet/firmware", "analytics/data"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
	}
	for i := range devices {
		added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("device-%d", i)}))
		for _, topic := range []string{"fleet/firmware", "analytics/data"} {
			if err := svc.AddMember(ctx, topic, added.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range []Policy{
		{Name: "firmware-weekly", Kind: TargetTopic, Selector: SelectExact, Pattern: "fleet/firmware", Period: week, Jitter: time.Hour},
		{Name: "analytics-weekly", Kind: TargetTopic, Selector: SelectFilter, Pattern: "analytics/#", Period: week, Jitter: time.Hour},
	} {
		must[Policy](t)(svc.AddPolicy(ctx, p))
	}
}

func tick(t *testing.T, svc *Service) TickReport {
	t.Helper()
	r, err := svc.SchedulerTick(context.Background())
	if err != nil {
		t.Fatalf("SchedulerTick: %v", err)
	}
	return r
}

func rotations(t *testing.T, svc *Service, f store.RotationFilter) []store.Rotation {
	t.Helper()
	var all []store.Rotation
	err := svc.view(context.Background(), func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		var after int64
		for {
			page, err := ptx.ListRotations(f, after, 1000)
			if err != nil {
				return err
			}
			all = append(all, page...)
			if len(page) < 1000 {
				return nil
			}
			after = page[len(page)-1].ID
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestYearOfWeeklyRotations simulates a year of the two-key example at one
// tick every eight hours, with C2 stopped for three weeks in the middle: each
// topic rotates once per crypto period it was up for, once at the restart
// for the periods it missed, never twice in a period, and on time (by the
// next tick) otherwise.
func TestYearOfWeeklyRotations(t *testing.T) {
	start := time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	twoKeyExample(t, svc, 3)
	policies := map[string]Policy{}
	for _, name := range []string{"firmware-weekly", "analytics-weekly"} {
		policies[name] = must[Policy](t)(svc.GetPolicy(context.Background(), name))
	}

	end := start.Add(365 * 24 * time.Hour)
	stop, restart := start.Add(20*week+8*time.Hour), start.Add(23*week+8*time.Hour)
	var ticks []time.Time
	const every = 8 * time.Hour
	for at := start.Add(every); !at.After(end); at = at.Add(every) {
		if !at.Before(stop) && at.Before(restart) {
			continue // C2 is down
		}
		ticks = append(ticks, at)
	}
	for _, at := range ticks {
		clock.Set(at)
		if r := tick(t, svc); r.Failed > 0 || r.Deferred > 0 {
			t.Fatalf("tick at %v: %+v", at, r)
		}
	}

	for topic, policy := range map[string]string{"fleet/firmware": "firmware-weekly", "analytics/data": "analytics-weekly"} {
		p := policies[policy]
		// The ideal: each period boundary is served by the first tick at or
		// after it; boundaries that fall in the outage share the restart's.
		served := map[time.Time]bool{}
		var want, missed int
		for k := int64(0); ; k++ {
			b := boundary(p.toStore(), topic, floorDiv(start.UnixNano(), int64(week))+k)
			if !b.After(start) {
				continue
			}
			if b.After(end) {
				break
			}
			if !b.Before(stop) && b.Before(restart) {
				missed++
			}
			for _, at := range ticks {
				if !at.Before(b) {
					if !served[at] {
						served[at] = true
						want++
					}
					break
				}
			}
		}
		got := rotations(t, svc, store.RotationFilter{Target: topic})
		info := must[TopicInfo](t)(svc.GetTopic(context.Background(), topic))
		t.Logf("%s: %d rotations in the year (%d boundaries fell in the 3-week outage), key version %d", topic, len(got), missed, info.KeyVersion)
		if missed != 3 {
			t.Fatalf("%s: %d boundaries in the outage, want 3 (the test's setup)", topic, missed)
		}
		if len(got) != want || int(info.KeyVersion) != want+1 {
			t.Fatalf("%s: %d rotations, key version %d; want %d rotations", topic, len(got), info.KeyVersion, want)
		}
		if want < 49 || want > 51 {
			t.Fatalf("%s: %d rotations expected in a year of weeks with 3 down: the setup is wrong", topic, want)
		}
		atRestart := 0
		for _, r := range got {
			delay := r.FiredAt.Sub(r.DueAt)
			if r.FiredAt.Equal(restart) {
				atRestart++
			} else if delay < 0 || delay >= every {
				t.Fatalf("%s: rotation due at %v fired at %v", topic, r.DueAt, r.FiredAt)
			}
			if r.Policy != policy || r.Reason != "period" {
				t.Fatalf("%s: rotation record %+v", topic, r)
			}
		}
		if atRestart != 1 {
			t.Fatalf("%s: %d rotations at the restart, want exactly 1", topic, atRestart)
		}
	}
}

// TestNewPolicySpreadsFirstRotations: a weekly policy over 150 topics whose
// keys are a year old rotates each of them once in its first week, spread
// over the week, not all at the first tick.
func TestNewPolicySpreadsFirstRotations(t *testing.T) {
	start := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start.Add(-365*24*time.Hour))
	svc := env.svc
	ctx := context.Background()
	const topics = 150
	for i := range topics {
		must[TopicInfo](t)(svc.AddTopic(ctx, fmt.Sprintf("site/%03d/telemetry", i)))
	}
	clock.Set(start)
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "weekly", Kind: TargetTopic, Selector: SelectPrefix, Pattern: "site/", Period: week}))
	busiest := 0
	for at := start; !at.After(start.Add(week)); at = at.Add(2 * time.Hour) {
		clock.Set(at)
		r := tick(t, svc)
		busiest = max(busiest, r.Rotated)
	}
	got := rotations(t, svc, store.RotationFilter{Policy: "weekly"})
	perTopic := map[string]int{}
	for _, r := range got {
		perTopic[r.Target]++
	}
	if len(got) != topics || len(perTopic) != topics {
		t.Fatalf("%d rotations of %d topics in the first week, want each of %d once", len(got), len(perTopic), topics)
	}
	// 150 topics over 84 two-hour ticks: about 2 a tick; 15 would be a
	// burst.
	if busiest > 15 {
		t.Fatalf("%d rotations in one tick: the first rotations were not spread", busiest)
	}
	t.Logf("150 topics: busiest two-hour tick fired %d rotations", busiest)
}

// TestLeavesCoalesce: 100 members leaving within a second give one
// rotation, which reaches the members that stay with RemoveTopic first.
func TestLeavesCoalesce(t *testing.T) {
	start := time.Date(2027, 5, 3, 9, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) { c.Automation.CoalesceLeaves = time.Second })
	svc := env.svc
	ctx := context.Background()
	must[TopicInfo](t)(svc.AddTopic(ctx, "plant/line1"))
	var ids []e4.ID
	for i := range 110 {
		added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("sensor-%d", i)}))
		ids = append(ids, added.ID)
	}
	if err := svc.AddMembers(ctx, "plant/line1", ids); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids[:100] {
		clock.Set(start.Add(time.Duration(i) * 9 * time.Millisecond))
		if err := svc.RemoveMember(ctx, "plant/line1", id); err != nil {
			t.Fatal(err)
		}
	}
	if v := must[TopicInfo](t)(svc.GetTopic(ctx, "plant/line1")).KeyVersion; v != 1 {
		t.Fatalf("key version %d before the window closed", v)
	}
	for ms := 0; ms <= 3000; ms += 100 {
		clock.Set(start.Add(time.Duration(ms) * time.Millisecond))
		tick(t, svc)
	}
	info := must[TopicInfo](t)(svc.GetTopic(ctx, "plant/line1"))
	got := rotations(t, svc, store.RotationFilter{Target: "plant/line1"})
	if info.KeyVersion != 2 || len(got) != 1 || got[0].Reason != eventLeave || got[0].Commands != 20 {
		t.Fatalf("after 100 leaves: key version %d, rotations %+v; want one rotation sending 10 members RemoveTopic and SetTopicKey", info.KeyVersion, got)
	}
}

// TestAnomalyRuleRotates: three forged messages on a topic within a minute
// rotate it once; two do not, nor do anomalies of another kind.
func TestAnomalyRuleRotates(t *testing.T) {
	start := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	for _, topic := range []string{"cams/1", "cams/2"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
	}
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "forgery", Kind: TargetTopic, Selector: SelectFilter,
		Pattern: "cams/+", OnEvent: "anomaly:forged", Threshold: 3, Window: time.Minute}))
	tick(t, svc) // loads the rules
	report := func(topic, kind string, after time.Duration) {
		clock.Set(start.Add(after))
		svc.ReportAnomaly(nil, topic, kind, "bad tag")
	}
	count := func() int { return len(rotations(t, svc, store.RotationFilter{})) }
	report("cams/1", "forged", time.Second)
	report("cams/1", "forged", 2*time.Second)
	report("cams/1", "replay", 3*time.Second)
	report("cams/2", "forged", 3*time.Second)
	tick(t, svc)
	if n := count(); n != 0 {
		t.Fatalf("%d rotations below the threshold", n)
	}
	report("cams/1", "forged", 30*time.Second) // the third within a minute
	report("cams/2", "forged", 70*time.Second) // the one at 3 s left the window
	report("cams/2", "forged", 71*time.Second)
	tick(t, svc)
	if got := rotations(t, svc, store.RotationFilter{}); len(got) != 1 || got[0].Target != "cams/1" || got[0].Reason != "rule:forgery" {
		t.Fatalf("rotations: %+v; want cams/1 once", got)
	}
	report("cams/2", "forged", 72*time.Second)
	report("cams/1", "forged", 73*time.Second) // counting started over after the trigger
	report("cams/1", "forged", 74*time.Second)
	tick(t, svc)
	if got := rotations(t, svc, store.RotationFilter{}); len(got) != 2 || got[1].Target != "cams/2" {
		t.Fatalf("rotations: %+v; want cams/1 then cams/2, once each", got)
	}
}

// TestBudgetBoundsCommands: 40 topics of 25 members, all due within one
// minute, queue at most the budget's commands per second (plus one
// second's burst), and every topic rotates.
func TestBudgetBoundsCommands(t *testing.T) {
	start := time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) { c.Automation.Budget = 100 })
	svc := env.svc
	ctx := context.Background()
	var ids []e4.ID
	for i := range 25 {
		ids = append(ids, must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("d%d", i)})).ID)
	}
	for i := range 40 {
		topic := fmt.Sprintf("zone/%d", i)
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
		if err := svc.AddMembers(ctx, topic, ids); err != nil {
			t.Fatal(err)
		}
	}
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "minutely", Kind: TargetTopic, Selector: SelectAll, Period: time.Minute}))
	// Every key is due at its phase within the first minute; tick every
	// 200 ms and check every one-second window.
	perTick := map[time.Time]int64{}
	for at := start; at.Before(start.Add(70 * time.Second)); at = at.Add(200 * time.Millisecond) {
		clock.Set(at)
		if r := tick(t, svc); r.Commands > 0 {
			perTick[at] = r.Commands
		}
	}
	var total int64
	for at := range perTick {
		var window int64
		for other, n := range perTick {
			if !other.Before(at) && other.Before(at.Add(time.Second)) {
				window += n
			}
		}
		if window > 200 {
			t.Fatalf("%d commands in the second from %v; budget 100/s with a 100 burst", window, at)
		}
		total += perTick[at]
	}
	rotated := map[string]bool{}
	for _, r := range rotations(t, svc, store.RotationFilter{}) {
		rotated[r.Target] = true
		if r.Commands != 25 {
			t.Fatalf("rotation %+v: want 25 commands", r)
		}
	}
	if len(rotated) != 40 || total%25 != 0 || total < 40*25 {
		t.Fatalf("%d topics rotated, %d commands; want all 40", len(rotated), total)
	}
}

// TestRotationOutcomes: a rotation converges when every acknowledging
// member acknowledged the new key, is stuck with the devices behind after
// StuckAfter, and a policy whose stuck rotations leave PauseBehind devices
// behind pauses; a paused policy fires nothing until it is resumed.
func TestRotationOutcomes(t *testing.T) {
	start := time.Date(2027, 8, 2, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) { c.Automation.StuckAfter = 2 * time.Hour })
	svc := env.svc
	ctx := context.Background()
	var ids []e4.ID
	for i := range 3 {
		id := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("d%d", i)})).ID
		if err := svc.SetAcknowledges(ctx, id, AckYes); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, topic := range []string{"a", "b"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
		if err := svc.AddMembers(ctx, topic, ids); err != nil {
			t.Fatal(err)
		}
		must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "p" + topic, Kind: TargetTopic, Selector: SelectExact,
			Pattern: topic, Period: 24 * time.Hour, PauseBehind: 3}))
	}
	ackA := func() {
		err := svc.update(ctx, func(tx store.Tx, _ *events) error {
			ta, err := tx.GetTopic("a")
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := tx.SetTopicAcked(id, "a", ta.KeyVersion, clock.Now()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every member acknowledges a's new keys at once; nobody b's.
	var aFired, bFired time.Time
	var paused int
	for at := start; aFired.IsZero() || bFired.IsZero() || at.Before(bFired.Add(3*time.Hour)); at = at.Add(20 * time.Minute) {
		if at.After(start.Add(48 * time.Hour)) {
			t.Fatal("a and b were not rotated in their first period")
		}
		clock.Set(at)
		paused += tick(t, svc).Paused
		ackA()
		for topic, fired := range map[string]*time.Time{"a": &aFired, "b": &bFired} {
			if got := rotations(t, svc, store.RotationFilter{Target: topic}); fired.IsZero() && len(got) == 1 {
				*fired = got[0].FiredAt
			}
		}
	}
	clock.Set(clock.Now().Add(10 * time.Minute))
	tick(t, svc) // settles a's last acknowledgement
	first := func(topic string) store.Rotation { return rotations(t, svc, store.RotationFilter{Target: topic})[0] }
	if a, b := first("a"), first("b"); a.State != store.RotationConverged || b.State != store.RotationStuck || b.Behind != 3 {
		t.Fatalf("outcomes: a %+v, b %+v", a, b)
	}
	if p := must[Policy](t)(svc.GetPolicy(ctx, "pb")); paused != 1 || p.PausedReason == "" {
		t.Fatalf("3 devices behind did not pause pb (%d paused, policy %+v)", paused, p)
	}
	if p := must[Policy](t)(svc.GetPolicy(ctx, "pa")); p.PausedReason != "" {
		t.Fatalf("pa paused: %+v", p)
	}
	// Paused, pb fires nothing over three days; resumed, it rotates b once.
	for at := clock.Now(); at.Before(bFired.Add(72 * time.Hour)); at = at.Add(4 * time.Hour) {
		clock.Set(at)
		tick(t, svc)
	}
	if n := len(rotations(t, svc, store.RotationFilter{Target: "b"})); n != 1 {
		t.Fatalf("a paused policy fired %d rotations", n-1)
	}
	if err := svc.ResumePolicy(ctx, "pb"); err != nil {
		t.Fatal(err)
	}
	tick(t, svc)
	if n := len(rotations(t, svc, store.RotationFilter{Target: "b"})); n != 2 {
		t.Fatalf("after resuming: %d rotations of b, want the overdue one once", n)
	}
}

// TestPolicyValidation: policies the scheduler could not follow are
// refused with ErrInvalidArgument, a duplicate name with ErrExists.
func TestPolicyValidation(t *testing.T) {
	env, _ := newClockedService(t, e4.SymKey, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	for _, p := range []Policy{
		{Name: "none", Kind: TargetTopic, Selector: SelectAll},
		{Name: "two", Kind: TargetTopic, Selector: SelectAll, Period: week, MaxAge: week},
		{Name: "jitter", Kind: TargetTopic, Selector: SelectAll, Period: time.Hour, Jitter: time.Hour},
		{Name: "filter", Kind: TargetTopic, Selector: SelectFilter, Pattern: "a/#/b", Period: week},
		{Name: "exact", Kind: TargetTopic, Selector: SelectExact, Pattern: "a/+", Period: week},
		{Name: "c2-in-sk", Kind: TargetC2, Selector: SelectAll, Period: week},
		{Name: "rule", Kind: TargetTopic, Selector: SelectAll, OnEvent: "anomaly", Threshold: 2},
		{Name: "kind", Kind: "device", Selector: SelectAll, Period: week},
	} {
		if _, err := env.svc.AddPolicy(ctx, p); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("policy %q: got %v, want ErrInvalidArgument", p.Name, err)
		}
	}
	ok := Policy{Name: "ok", Kind: TargetClient, Selector: SelectAll, MaxAge: 30 * 24 * time.Hour}
	must[Policy](t)(env.svc.AddPolicy(ctx, ok))
	if _, err := env.svc.AddPolicy(ctx, ok); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
}

// TestClientKeyAgePolicy: a client whose key reaches the policy's age gets
// a new one (SetIDKey) once, and not again before its new key is as old.
func TestClientKeyAgePolicy(t *testing.T) {
	start := time.Date(2027, 9, 1, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	id := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "gateway"})).ID
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "monthly", Kind: TargetClient, Selector: SelectExact, Pattern: "gateway", MaxAge: 30 * 24 * time.Hour}))
	for day := 0; day <= 45; day++ {
		clock.Set(start.Add(time.Duration(day) * 24 * time.Hour))
		tick(t, svc)
	}
	got := rotations(t, svc, store.RotationFilter{Kind: store.TargetClient})
	if len(got) != 1 || got[0].Target != fmt.Sprintf("%x", id[:]) || got[0].Reason != "age" {
		t.Fatalf("client rotations in 45 days: %+v", got)
	}
	n, err := svc.CountCommands(ctx, CommandFilter{Client: &id})
	if err != nil || n != 1 {
		t.Fatalf("%d commands to the client (%v), want its SetIDKey", n, err)
	}
}

// TestPreview: the preview lists what rotates in the next day, with
// the policy, and NextRotation gives a topic's next due time.
func TestPreview(t *testing.T) {
	start := time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	twoKeyExample(t, svc, 1)
	clock.Set(start.Add(time.Minute))
	tick(t, svc) // computes the real due times
	week := must[[]PlannedRotation](t)(svc.PreviewRotations(ctx, start.Add(8*24*time.Hour), 10))
	if len(week) != 2 || week[0].DueAt.After(week[1].DueAt) {
		t.Fatalf("preview of 8 days: %+v", week)
	}
	for _, p := range week {
		next, ok, err := svc.NextRotation(ctx, TargetTopic, p.Target)
		if err != nil || !ok || !next.DueAt.Equal(p.DueAt) || next.Policy != p.Policy {
			t.Fatalf("NextRotation(%s) = %+v, %v, %v; preview %+v", p.Target, next, ok, err, p)
		}
	}
	first := week[0].DueAt
	day := must[[]PlannedRotation](t)(svc.PreviewRotations(ctx, first, 10))
	if len(day) != 0 {
		t.Fatalf("preview before the first due time: %+v", day)
	}
}

// TestC2KeyPolicy (PK mode): a weekly policy on C2's key pair rotates it
// once per period boundary, each rotation sending every client SetC2Key.
func TestC2KeyPolicy(t *testing.T) {
	start := time.Date(2027, 10, 4, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.PubKey, start)
	svc := env.svc
	ctx := context.Background()
	for i := range 3 {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("pk-%d", i), PublicKey: pub}))
	}
	p := must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "c2-weekly", Kind: TargetC2, Selector: SelectAll, Period: week}))
	before := must[[]byte](t)(svc.C2PublicKey())
	end := start.Add(15 * 24 * time.Hour)
	for at := start; !at.After(end); at = at.Add(4 * time.Hour) {
		clock.Set(at)
		tick(t, svc)
	}
	want := 0
	for k := floorDiv(start.UnixNano(), int64(week)); ; k++ {
		b := boundary(p.toStore(), c2ScheduleTarget, k)
		if b.After(end) {
			break
		}
		if b.After(start) {
			want++
		}
	}
	got := rotations(t, svc, store.RotationFilter{Kind: store.TargetC2})
	if len(got) != want || got[0].Commands != 3 {
		t.Fatalf("C2 key rotations in 15 days: %+v; want %d, each to the 3 clients", got, want)
	}
	if after := must[[]byte](t)(svc.C2PublicKey()); bytes.Equal(after, before) {
		t.Fatal("C2's public key did not change")
	}
}

// TestTopicAddedLater: a topic added after its policy is scheduled in the
// transaction that adds it, and a key an operator made after a period
// boundary serves that period: the scheduler does not rotate it again.
func TestTopicAddedLater(t *testing.T) {
	start := time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "daily", Kind: TargetTopic, Selector: SelectPrefix, Pattern: "new/", Period: 24 * time.Hour}))
	clock.Set(start.Add(time.Hour))
	must[TopicInfo](t)(svc.AddTopic(ctx, "new/topic"))
	first, ok, err := svc.NextRotation(ctx, TargetTopic, "new/topic")
	if err != nil || !ok || first.DueAt.After(start.Add(49*time.Hour)) {
		t.Fatalf("NextRotation of a new topic: %+v %v %v", first, ok, err)
	}
	// The operator rotates just after the boundary, before the scheduler
	// got to it: the scheduler does not rotate it again.
	clock.Set(first.DueAt.Add(time.Second))
	if _, err := svc.RotateTopic(ctx, "new/topic"); err != nil {
		t.Fatal(err)
	}
	clock.Set(first.DueAt.Add(time.Minute))
	tick(t, svc)
	if got := rotations(t, svc, store.RotationFilter{Policy: "daily"}); len(got) != 0 {
		t.Fatalf("rotated again right after the operator did: %+v", got)
	}
	clock.Set(first.DueAt.Add(24*time.Hour + time.Minute))
	tick(t, svc)
	if got := rotations(t, svc, store.RotationFilter{Policy: "daily"}); len(got) != 1 || !got[0].DueAt.Equal(first.DueAt.Add(24*time.Hour)) {
		t.Fatalf("rotations a period later: %+v", got)
	}
}

// TestLeaveAndPeriodTogether: a leave pending in its coalescing window
// when the topic's period comes due is served by one rotation, made the
// leave's way (RemoveTopic then SetTopicKey to the members left).
func TestLeaveAndPeriodTogether(t *testing.T) {
	start := time.Date(2027, 12, 6, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) { c.Automation.CoalesceLeaves = time.Hour })
	svc := env.svc
	ctx := context.Background()
	must[TopicInfo](t)(svc.AddTopic(ctx, "door/lock"))
	var ids []e4.ID
	for i := range 3 {
		ids = append(ids, must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("lock-%d", i)})).ID)
	}
	if err := svc.AddMembers(ctx, "door/lock", ids); err != nil {
		t.Fatal(err)
	}
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "daily", Kind: TargetTopic, Selector: SelectAll, Period: 24 * time.Hour}))
	next, ok, err := svc.NextRotation(ctx, TargetTopic, "door/lock")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	clock.Set(next.DueAt.Add(-10 * time.Minute))
	if err := svc.RemoveMember(ctx, "door/lock", ids[0]); err != nil {
		t.Fatal(err)
	}
	clock.Set(next.DueAt.Add(time.Minute)) // the period is due, the leave's window still open
	tick(t, svc)
	clock.Set(next.DueAt.Add(2 * time.Hour)) // the leave's window has passed
	tick(t, svc)
	got := rotations(t, svc, store.RotationFilter{})
	if len(got) != 1 || got[0].Reason != eventLeave || got[0].Commands != 4 {
		t.Fatalf("rotations: %+v; want one, the leave's (RemoveTopic and SetTopicKey to 2 members)", got)
	}
}

// TestFailedRotationRetried: a rotation that fails (a client-key change
// still pending) is recorded failed and tried again after a delay that
// doubles, and succeeds once the cause is gone.
func TestFailedRotationRetried(t *testing.T) {
	start := time.Date(2028, 1, 3, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) { c.Automation.RetryAfter = time.Minute })
	svc := env.svc
	ctx := context.Background()
	id := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "meter"})).ID
	// The operator changes the key; the device never confirms it.
	if _, err := svc.NewClientKey(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "fast", Kind: TargetClient, Selector: SelectAll, MaxAge: time.Hour}))
	// The key reaches its age within the hour; from then on each try fails.
	var tries []time.Time
	for at := start; at.Before(start.Add(2 * time.Hour)); at = at.Add(30 * time.Second) {
		clock.Set(at)
		if r := tick(t, svc); r.Failed > 0 {
			tries = append(tries, at)
		}
	}
	if len(tries) < 4 {
		t.Fatalf("%d failed tries in two hours", len(tries))
	}
	for i := 2; i < len(tries); i++ {
		if gap, prev := tries[i].Sub(tries[i-1]), tries[i-1].Sub(tries[i-2]); gap < 2*prev-time.Minute {
			t.Fatalf("retries at %v: the delay does not double", tries)
		}
	}
	failed := rotations(t, svc, store.RotationFilter{State: store.RotationFailed})
	if len(failed) != len(tries) || !strings.Contains(failed[0].Detail, "not confirmed") {
		t.Fatalf("failed records: %+v", failed)
	}
	// The device confirms its key: the next try goes through.
	err := svc.update(ctx, func(tx store.Tx, _ *events) error {
		ds, err := tx.GetDeviceState(id)
		if err != nil {
			return err
		}
		ds.PrevSealedKey, ds.KeyState, ds.KeyChangedAt = nil, store.KeySettled, time.Time{}
		return tx.PutDeviceState(ds)
	})
	if err != nil {
		t.Fatal(err)
	}
	for at := clock.Now(); at.Before(start.Add(6 * time.Hour)); at = at.Add(time.Minute) {
		clock.Set(at)
		tick(t, svc)
	}
	// (The device does not confirm the new change either, so later tries
	// fail again: count those that went through.)
	through := 0
	for _, r := range rotations(t, svc, store.RotationFilter{Kind: store.TargetClient, Policy: "fast"}) {
		if r.State != store.RotationFailed && r.Commands == 1 {
			through++
		}
	}
	if through != 1 {
		t.Fatalf("%d rotations went through after the cause was gone, want 1", through)
	}
}

// TestRampAfterResume: a policy resumed after a pause finds all its
// topics overdue; its ramp lets 5 rotations through in the first minute
// and twice as many each minute after, and every topic rotates once.
func TestRampAfterResume(t *testing.T) {
	start := time.Date(2028, 2, 7, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	const topics = 60
	for i := range topics {
		must[TopicInfo](t)(svc.AddTopic(ctx, fmt.Sprintf("ramp/%02d", i)))
	}
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "hourly", Kind: TargetTopic, Selector: SelectAll, Period: time.Hour, Ramp: 5}))
	if err := svc.PausePolicy(ctx, "hourly", "maintenance"); err != nil {
		t.Fatal(err)
	}
	resumed := start.Add(3 * time.Hour)
	clock.Set(resumed)
	if err := svc.ResumePolicy(ctx, "hourly"); err != nil {
		t.Fatal(err)
	}
	var fired []time.Time
	firstFire := map[string]time.Time{}
	var last time.Time
	for at := resumed; at.Before(resumed.Add(10 * time.Minute)); at = at.Add(5 * time.Second) {
		clock.Set(at)
		last = at
		tick(t, svc)
		for _, r := range rotations(t, svc, store.RotationFilter{FiredSince: at}) {
			fired = append(fired, r.FiredAt)
			if _, ok := firstFire[r.Target]; !ok {
				firstFire[r.Target] = r.FiredAt
			}
		}
		allowed := 5 << int(at.Sub(resumed)/time.Minute)
		inLastMinute := 0
		for _, f := range fired {
			if at.Sub(f) < time.Minute {
				inLastMinute++
			}
		}
		if inLastMinute > allowed {
			t.Fatalf("%d rotations in the minute before %v, ramp allows %d", inLastMinute, at.Sub(resumed), allowed)
		}
	}
	// Each topic rotates once, and again if its next hourly boundary came
	// before the end.
	p := must[Policy](t)(svc.GetPolicy(ctx, "hourly"))
	want := topics
	for topic, at := range firstFire {
		if !periodDue(p.toStore(), topic, at).After(last) {
			want++
		}
	}
	if len(firstFire) != topics || len(fired) != want {
		t.Fatalf("%d rotations of %d topics after the resume, want %d of %d", len(fired), len(firstFire), want, topics)
	}
	if first := fired[4]; first.Sub(resumed) >= time.Minute || fired[5].Sub(resumed) < time.Minute {
		t.Fatalf("the ramp's first minute fired %v", fired[:6])
	}
}
