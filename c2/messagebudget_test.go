package c2

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// currentVersion returns a topic's key version.
func currentVersion(t *testing.T, svc *Service, topic string) uint64 {
	t.Helper()
	return must[TopicInfo](t)(svc.GetTopic(context.Background(), topic)).KeyVersion
}

// countMessages reports n messages on topic under version, as the monitor
// does.
func countMessages(t *testing.T, svc *Service, topic string, version uint64, n int64) {
	t.Helper()
	if err := svc.CountMessages(context.Background(), []MessageCount{{Topic: topic, Version: version, Messages: n}}); err != nil {
		t.Fatalf("CountMessages: %v", err)
	}
}

// storedCount reads a topic's message count from the database.
func storedCount(t *testing.T, svc *Service, topic string) int64 {
	t.Helper()
	var n int64
	err := svc.view(context.Background(), func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		_, n, err = ptx.TopicMessages(topic)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// budgetPlan returns a topic's count and budget as the preview gives them.
func budgetPlan(t *testing.T, svc *Service, topic string) PlannedRotation {
	t.Helper()
	plan, _, err := svc.NextRotation(context.Background(), TargetTopic, topic)
	if err != nil {
		t.Fatalf("NextRotation: %v", err)
	}
	return plan
}

// TestMessageBudgetRotates: messages are counted only for topics a budget
// policy selects, from when it exists; a topic under a budget of 100
// messages does not rotate at 99, rotates exactly once (reason messages) when the count
// reaches 100, and counts again from 0 under its new key; a count for the
// replaced key is dropped, and the preview shows the count and budget.
func TestMessageBudgetRotates(t *testing.T) {
	start := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	const topic = "meters/1"
	must[TopicInfo](t)(svc.AddTopic(ctx, topic))
	must[TopicInfo](t)(svc.AddTopic(ctx, "other/1"))
	countMessages(t, svc, topic, 1, 50) // before any budget policy: not counted
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "gcm", Kind: TargetTopic, Selector: SelectFilter,
		Pattern: "meters/#", MaxMessages: 100}))
	if n := storedCount(t, svc, topic); n != 0 {
		t.Fatalf("messages counted before any budget policy: %d", n)
	}
	byBudget := func() []store.Rotation { return rotations(t, svc, store.RotationFilter{Policy: "gcm"}) }

	countMessages(t, svc, topic, 1, 60)
	countMessages(t, svc, topic, 1, 39)
	countMessages(t, svc, "other/1", 1, 500) // no budget selects it
	for i := range 3 {
		clock.Set(start.Add(time.Duration(i+1) * time.Second))
		tick(t, svc)
	}
	if got := byBudget(); len(got) != 0 {
		t.Fatalf("rotations at 99 of 100 messages: %+v", got)
	}
	if plan := budgetPlan(t, svc, topic); plan.Messages != 99 || plan.MaxMessages != 100 {
		t.Fatalf("preview at 99 messages: %+v", plan)
	}
	if n := storedCount(t, svc, "other/1"); n != 0 {
		t.Fatalf("a topic no budget selects has a count of %d, want none kept", n)
	}

	countMessages(t, svc, topic, 1, 1)
	list := must[[]PlannedRotation](t)(svc.PreviewRotations(ctx, start.Add(time.Hour), 10))
	if len(list) != 1 || list[0].Target != topic || list[0].Reason != reasonMessages || list[0].Messages != 100 {
		t.Fatalf("preview with the budget spent: %+v", list)
	}
	countMessages(t, svc, topic, 1, 5) // still counting before the tick: one rotation
	for i := range 3 {
		clock.Set(start.Add(time.Duration(10+i) * time.Second))
		tick(t, svc)
	}
	got := byBudget()
	if len(got) != 1 || got[0].Target != topic || got[0].Reason != reasonMessages || got[0].Version != 2 {
		t.Fatalf("rotations once the budget is spent: %+v; want one of %s to version 2, reason messages", got, topic)
	}
	if v := currentVersion(t, svc, topic); v != 2 {
		t.Fatalf("key version %d after the budget rotation, want 2", v)
	}
	if plan := budgetPlan(t, svc, topic); plan.Messages != 0 {
		t.Fatalf("count after the rotation: %+v, want 0", plan)
	}
	countMessages(t, svc, topic, 1, 100) // late, under the replaced key
	countMessages(t, svc, topic, 2, 99)
	clock.Set(start.Add(time.Minute))
	tick(t, svc)
	if got := byBudget(); len(got) != 1 {
		t.Fatalf("rotations after 99 messages under the new key and a late count under the old: %+v", got)
	}
	countMessages(t, svc, topic, 2, 1)
	clock.Set(start.Add(time.Minute + time.Second))
	tick(t, svc)
	if got := byBudget(); len(got) != 2 || got[1].Version != 3 {
		t.Fatalf("rotations after the new key's budget: %+v", got)
	}
}

// TestMessageBudgetEventDropped: a spent budget whose topic an operator
// rotated before the scheduler got to it, or whose policy was paused
// after the budget was spent, fires no rotation: due-ness is the count
// under the current key of a running policy.
func TestMessageBudgetEventDropped(t *testing.T) {
	start := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start)
	svc := env.svc
	ctx := context.Background()
	must[TopicInfo](t)(svc.AddTopic(ctx, "a"))
	must[TopicInfo](t)(svc.AddTopic(ctx, "b"))
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "gcm", Kind: TargetTopic, Selector: SelectAll, MaxMessages: 10}))
	countMessages(t, svc, "a", 1, 10)
	countMessages(t, svc, "b", 1, 10)
	if _, err := svc.RotateTopic(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(time.Second))
	tick(t, svc)
	got := rotations(t, svc, store.RotationFilter{})
	if len(got) != 2 || got[0].Target != "a" || got[0].Reason != "manual" || got[1].Target != "b" || got[1].Reason != reasonMessages {
		t.Fatalf("rotations: %+v; want a by hand, then b by its budget (not a again)", got)
	}
	countMessages(t, svc, "b", 2, 10) // spent again: its rotation is scheduled
	if err := svc.PausePolicy(ctx, "gcm", "test"); err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(2 * time.Second))
	tick(t, svc)
	if got := rotations(t, svc, store.RotationFilter{}); len(got) != 2 {
		t.Fatalf("rotations under a paused budget policy: %+v", got)
	}
	// Resumed, the policy finds b's count over the budget at once, without
	// waiting for another count; a, under it, stays.
	if err := svc.ResumePolicy(ctx, "gcm"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		clock.Set(start.Add(time.Duration(3+i) * time.Second))
		tick(t, svc)
	}
	got = rotations(t, svc, store.RotationFilter{})
	if len(got) != 3 || got[2].Target != "b" || got[2].Reason != reasonMessages || got[2].Version != 3 {
		t.Fatalf("rotations after resuming: %+v; want a third, of b to version 3 by its budget", got)
	}
}

// TestMessageBudgetValidation: a budget is a topic policy's only trigger,
// never negative, and CountMessages refuses bad counts.
func TestMessageBudgetValidation(t *testing.T) {
	env, _ := newClockedService(t, e4.SymKey, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	for _, p := range []Policy{
		{Name: "negative", Kind: TargetTopic, Selector: SelectAll, MaxMessages: -1},
		{Name: "negative-with-period", Kind: TargetTopic, Selector: SelectAll, Period: week, MaxMessages: -5},
		{Name: "two", Kind: TargetTopic, Selector: SelectAll, Period: week, MaxMessages: 100},
		{Name: "client", Kind: TargetClient, Selector: SelectAll, MaxMessages: 100},
		{Name: "jitter", Kind: TargetTopic, Selector: SelectAll, MaxMessages: 100, Jitter: time.Second},
	} {
		if _, err := env.svc.AddPolicy(ctx, p); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("policy %q: got %v, want ErrInvalidArgument", p.Name, err)
		}
	}
	has, err := env.svc.HasMessageBudgets(ctx)
	if err != nil || has {
		t.Fatalf("HasMessageBudgets without one: %v, %v", has, err)
	}
	must[Policy](t)(env.svc.AddPolicy(ctx, Policy{Name: "ok", Kind: TargetTopic, Selector: SelectAll, MaxMessages: 1 << 32}))
	if has, err := env.svc.HasMessageBudgets(ctx); err != nil || !has {
		t.Fatalf("HasMessageBudgets with one: %v, %v", has, err)
	}
	for _, c := range [][]MessageCount{
		{{Topic: "a", Version: 1, Messages: -1}},
		{{Topic: "a", Version: 0, Messages: 1}},
		{{Topic: "a/#", Version: 1, Messages: 1}},
		make([]MessageCount, MaxMessageCounts+1),
	} {
		if err := env.svc.CountMessages(ctx, c); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("CountMessages(%.60v): %v, want ErrInvalidArgument", c, err)
		}
	}
}

// TestMessageBudgetAcrossReplicas: two replicas on one PostgreSQL database
// add their monitors' counts to the same topic; the budget is reached
// once, the topic rotates once whichever replica ticks, and a replica
// restarted afterwards does not rotate it again.
func TestMessageBudgetAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := testbroker.StartPostgres(t, nil).NewDatabase(t)
	start := time.Date(2027, 5, 3, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	master, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	replica := func(name string) *testEnv {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		env := &testEnv{dbPath: filepath.Join(t.TempDir(), "unused.db"), master: master}
		env.start(t, e4.SymKey, nil, func(c *Config) {
			c.Store, c.Now = st, clock.Now
			c.Automation.Disabled, c.Automation.Owner = true, name
		})
		return env
	}
	a, b := replica("a"), replica("b")
	const topic = "fleet/x"
	must[TopicInfo](t)(a.svc.AddTopic(ctx, topic))
	id := must[AddedClient](t)(a.svc.AddClient(ctx, NewClient{Name: "sensor"})).ID
	if err := a.svc.AddMember(ctx, topic, id); err != nil {
		t.Fatal(err)
	}
	must[Policy](t)(b.svc.AddPolicy(ctx, Policy{Name: "gcm", Kind: TargetTopic, Selector: SelectExact,
		Pattern: topic, MaxMessages: 100}))
	byBudget := func() []store.Rotation { return rotations(t, a.svc, store.RotationFilter{Policy: "gcm"}) }

	// Both replicas count at once: 99 in all, then 2 more, one each.
	done := make(chan error, 1)
	go func() {
		var err error
		for range 33 {
			err = errors.Join(err, b.svc.CountMessages(ctx, []MessageCount{{Topic: topic, Version: 1, Messages: 1}}))
		}
		done <- err
	}()
	for range 66 {
		countMessages(t, a.svc, topic, 1, 1)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(time.Second))
	tick(t, a.svc)
	tick(t, b.svc)
	if got := byBudget(); len(got) != 0 {
		t.Fatalf("rotations at 99 messages: %+v", got)
	}
	countMessages(t, a.svc, topic, 1, 1)
	countMessages(t, b.svc, topic, 1, 1)
	clock.Set(start.Add(2 * time.Second))
	tick(t, b.svc)
	tick(t, a.svc)
	tick(t, b.svc)
	got := byBudget()
	if len(got) != 1 || got[0].Reason != reasonMessages || got[0].Version != 2 {
		t.Fatalf("rotations after the budget was reached through two replicas: %+v, want one", got)
	}

	// A replica restarted after the rotation finds nothing due.
	a.stop()
	c := replica("c")
	clock.Set(start.Add(3 * time.Second))
	tick(t, c.svc)
	tick(t, b.svc)
	if got := byBudget(); len(got) != 1 {
		t.Fatalf("rotations after a restart: %+v", got)
	}
	if plan := budgetPlan(t, c.svc, topic); plan.Messages != 0 || plan.MaxMessages != 100 {
		t.Fatalf("count after the rotation, from the restarted replica: %+v", plan)
	}
	// Counts survive the restart: 60 before it, 40 after, one rotation.
	countMessages(t, b.svc, topic, 2, 60)
	b.stop()
	d := replica("d")
	countMessages(t, d.svc, topic, 2, 40)
	clock.Set(start.Add(4 * time.Second))
	tick(t, d.svc)
	tick(t, c.svc)
	if got := byBudget(); len(got) != 2 || got[1].Version != 3 {
		t.Fatalf("rotations after 60 messages, a restart and 40 more: %+v", got)
	}
}
