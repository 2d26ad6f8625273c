package c2

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// ackC2Key records that the devices of ids acknowledged C2's current
// public key, as the handling of their acknowledgements does.
func ackC2Key(t *testing.T, svc *Service, ids ...e4.ID) {
	t.Helper()
	public := must[[]byte](t)(svc.C2PublicKey())
	err := svc.update(context.Background(), func(tx store.Tx, _ *events) error {
		for _, id := range ids {
			ds, err := tx.GetDeviceState(id)
			if err != nil {
				return err
			}
			ds.C2KeyAcked = public
			if err := tx.PutDeviceState(ds); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// addPKClients adds n PK clients whose devices acknowledge.
func addPKClients(t *testing.T, svc *Service, prefix string, n int) []e4.ID {
	t.Helper()
	ctx := context.Background()
	var ids []e4.ID
	for i := range n {
		pub, _ := newEd25519(t)
		id := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("%s-%d", prefix, i), PublicKey: pub})).ID
		if err := svc.SetAcknowledges(ctx, id, AckYes); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// tickUntil ticks every 20 minutes until cond holds (at most two days).
func tickUntil(t *testing.T, svc *Service, clock *fakeClock, cond func() bool) {
	t.Helper()
	limit := clock.Now().Add(48 * time.Hour)
	for !cond() {
		if clock.Now().After(limit) {
			t.Fatal("the condition did not hold within two days")
		}
		clock.Set(clock.Now().Add(20 * time.Minute))
		tick(t, svc)
	}
}

// TestC2KeyRotationOutcome (PK mode): a rotation of C2's key pair is
// settled from the devices' acknowledgements of C2's new public key like a
// topic's: converged once every acknowledging client that existed when it
// fired holds the key (a client added later does not hold it back), stuck
// with the devices behind after StuckAfter.
func TestC2KeyRotationOutcome(t *testing.T) {
	start := time.Date(2027, 10, 4, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.PubKey, start, func(c *Config) { c.Automation.StuckAfter = 2 * time.Hour })
	svc := env.svc
	ctx := context.Background()
	ids := addPKClients(t, svc, "pk", 3)
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "c2-daily", Kind: TargetC2, Selector: SelectAll, Period: 24 * time.Hour}))
	c2Rotations := func() []store.Rotation { return rotations(t, svc, store.RotationFilter{Kind: store.TargetC2}) }
	tickUntil(t, svc, clock, func() bool { return len(c2Rotations()) == 1 })
	if got := c2Rotations()[0]; got.State != store.RotationStarted {
		t.Fatalf("a rotation no device acknowledged is %+v", got)
	}
	// A client added after the rotation is provisioned with the new key;
	// it never acknowledges it, and must not hold the rotation back.
	clock.Set(clock.Now().Add(time.Minute))
	addPKClients(t, svc, "late", 1)
	ackC2Key(t, svc, ids[:2]...)
	tick(t, svc)
	if got := c2Rotations()[0]; got.State != store.RotationStarted {
		t.Fatalf("with one device behind and before StuckAfter: %+v", got)
	}
	ackC2Key(t, svc, ids[2])
	clock.Set(clock.Now().Add(c2SettleEvery)) // a replica counts once a minute
	tick(t, svc)
	first := c2Rotations()[0]
	if first.State != store.RotationConverged || !strings.Contains(first.Detail, "3 of 3 clients") {
		t.Fatalf("every device acknowledged C2's new public key: %+v", first)
	}

	// The next rotation reaches the late client too; it and ids[2] never
	// acknowledge it.
	tickUntil(t, svc, clock, func() bool { return len(c2Rotations()) == 2 })
	ackC2Key(t, svc, ids[:2]...)
	fired := c2Rotations()[1].FiredAt
	tickUntil(t, svc, clock, func() bool { return clock.Now().Sub(fired) > 2*time.Hour })
	second := c2Rotations()[1]
	if second.State != store.RotationStuck || second.Behind != 2 || !strings.Contains(second.Detail, "2 of 4 clients") {
		t.Fatalf("two devices behind after StuckAfter: %+v", second)
	}
}

// TestManualRotationsRecorded: rotations made outside the scheduler (an
// operator's RotateTopic and NewClientKey, a topic rotated when a member
// leaves) are recorded with no policy and their trigger, in the
// rotation's own transaction, and settled like the scheduler's.
func TestManualRotationsRecorded(t *testing.T) {
	start := time.Date(2027, 9, 6, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.SymKey, start, func(c *Config) { c.Automation.StuckAfter = time.Hour })
	svc := env.svc
	ctx := context.Background()
	var ids []e4.ID
	for i := range 3 {
		id := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("m%d", i)})).ID
		if err := svc.SetAcknowledges(ctx, id, AckYes); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	must[TopicInfo](t)(svc.AddTopic(ctx, "plant/a"))
	if err := svc.AddMembers(ctx, "plant/a", ids); err != nil {
		t.Fatal(err)
	}
	if n := len(rotations(t, svc, store.RotationFilter{})); n != 0 {
		t.Fatalf("%d rotations recorded before any rotation", n)
	}
	if _, err := svc.RotateTopic(ctx, "plant/a"); err != nil {
		t.Fatal(err)
	}
	got := rotations(t, svc, store.RotationFilter{})
	if len(got) != 1 || got[0].Kind != store.TargetTopic || got[0].Target != "plant/a" || got[0].Policy != "" ||
		got[0].Reason != "manual" || got[0].Version != 2 || got[0].Commands != 3 || got[0].State != store.RotationStarted {
		t.Fatalf("after RotateTopic: %+v", got)
	}
	// A failed rotation records nothing: the record is in its transaction.
	if _, err := svc.RotateTopic(ctx, "plant/none"); err == nil {
		t.Fatal("RotateTopic of an unknown topic succeeded")
	}
	if _, err := svc.NewClientKey(ctx, ids[0], nil); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemoveMember(ctx, "plant/a", ids[2]); err != nil {
		t.Fatal(err)
	}
	got = rotations(t, svc, store.RotationFilter{})
	if len(got) != 3 || got[1].Kind != store.TargetClient || got[1].Target != ids[0].String() || got[1].Reason != "manual" ||
		got[2].Target != "plant/a" || got[2].Reason != eventLeave || got[2].Version != 3 || got[2].Commands != 4 {
		t.Fatalf("after NewClientKey and RemoveMember: %+v", got)
	}
	// The members acknowledge version 3; the device of ids[0] never
	// confirms its new key.
	err := svc.update(ctx, func(tx store.Tx, _ *events) error {
		for _, id := range ids[:2] {
			if err := tx.SetTopicAcked(id, "plant/a", 3, clock.Now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(2 * time.Hour))
	tick(t, svc)
	got = rotations(t, svc, store.RotationFilter{})
	want := []store.RotationState{store.RotationSuperseded, store.RotationStuck, store.RotationConverged}
	for i, r := range got {
		if r.State != want[i] {
			t.Fatalf("outcomes %+v, want %v", got, want)
		}
	}
	if got[1].Behind != 1 {
		t.Fatalf("the client-key change left %d devices behind, want 1", got[1].Behind)
	}
}

// TestManualC2KeyRotationRecorded (PK mode): an operator's RotateC2Key is
// recorded and settled from the devices' acknowledgements; a scheduled
// rotation it replaced before it settled is superseded.
func TestManualC2KeyRotationRecorded(t *testing.T) {
	start := time.Date(2027, 10, 4, 0, 0, 0, 0, time.UTC)
	env, clock := newClockedService(t, e4.PubKey, start)
	svc := env.svc
	ctx := context.Background()
	ids := addPKClients(t, svc, "pk", 2)
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "c2-daily", Kind: TargetC2, Selector: SelectAll, Period: 24 * time.Hour}))
	c2Rotations := func() []store.Rotation { return rotations(t, svc, store.RotationFilter{Kind: store.TargetC2}) }
	tickUntil(t, svc, clock, func() bool { return len(c2Rotations()) == 1 })
	if n, err := svc.RotateC2Key(ctx); err != nil || n != 2 {
		t.Fatalf("RotateC2Key: %d, %v", n, err)
	}
	ackC2Key(t, svc, ids...)
	clock.Set(clock.Now().Add(c2SettleEvery))
	tick(t, svc)
	got := c2Rotations()
	if len(got) != 2 || got[0].State != store.RotationSuperseded || got[1].Policy != "" || got[1].Reason != "manual" ||
		got[1].Commands != 2 || got[1].State != store.RotationConverged {
		t.Fatalf("C2 key rotations: %+v", got)
	}
}
