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
		if err := svc.SetAcknowledges(ctx, id, store.AckYes); err != nil {
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
	must[Policy](t)(svc.AddPolicy(ctx, Policy{Name: "c2-daily", Kind: store.TargetC2, Selector: store.SelectAll, Period: 24 * time.Hour}))
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
