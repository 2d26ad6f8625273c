package storetest

import (
	"context"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// policies returns tx as a store.PolicyTx, failing the test when the
// backend does not implement it.
func policies(t testing.TB, tx store.Tx) store.PolicyTx {
	t.Helper()
	p, ok := tx.(store.PolicyTx)
	if !ok {
		t.Fatalf("the backend's Tx (%T) does not implement store.PolicyTx", tx)
	}
	return p
}

func newPolicy(name string, sel store.Selector, pattern string) store.Policy {
	return store.Policy{
		Name: name, Kind: store.TargetTopic, Selector: sel, Pattern: pattern,
		Period: 7 * 24 * time.Hour, Jitter: time.Hour, Ramp: 10, PauseBehind: 50,
		CreatedBy: "token:root", CreatedAt: base, StartedAt: base.Add(time.Minute),
	}
}

func testPolicyLifecycle(t *testing.T, s store.Store) {
	weekly := newPolicy("weekly", store.SelectPrefix, "fw/")
	weekly.OnEvent, weekly.Threshold, weekly.Window = "anomaly:forged", 3, time.Minute
	update(t, s, func(tx store.Tx) error { return policies(t, tx).PutPolicy(weekly) })
	update(t, s, func(tx store.Tx) error {
		return policies(t, tx).PutPolicy(newPolicy("one", store.SelectExact, "data/7"))
	})
	view(t, s, func(tx store.Tx) error {
		got, err := policies(t, tx).GetPolicy("weekly")
		ok(t, "GetPolicy", err)
		if got.Kind != store.TargetTopic || got.Selector != store.SelectPrefix || got.Pattern != "fw/" ||
			got.Period != weekly.Period || got.Jitter != time.Hour || got.Ramp != 10 || got.PauseBehind != 50 ||
			got.OnEvent != "anomaly:forged" || got.Threshold != 3 || got.Window != time.Minute ||
			!sameTime(got.CreatedAt, base) || !sameTime(got.StartedAt, base.Add(time.Minute)) {
			t.Fatalf("GetPolicy: %+v", got)
		}
		_, err = policies(t, tx).GetPolicy("none")
		wantErr(t, "unknown policy", err, store.ErrNotFound)
		list, err := policies(t, tx).ListPolicies("", 10)
		ok(t, "ListPolicies", err)
		if len(list) != 2 || list[0].Name != "one" || list[1].Name != "weekly" {
			t.Fatalf("ListPolicies: %+v", list)
		}
		has, err := policies(t, tx).HasPolicies(store.TargetClient)
		ok(t, "HasPolicies", err)
		if has {
			t.Fatal("HasPolicies(client) with topic policies only")
		}
		rules, err := policies(t, tx).EventPolicies("", 10)
		ok(t, "EventPolicies", err)
		if len(rules) != 1 || rules[0].Name != "weekly" {
			t.Fatalf("EventPolicies: %+v", rules)
		}
		for target, want := range map[string]int{"data/7": 2, "data/8": 1} {
			got, err := policies(t, tx).PoliciesFor(store.TargetTopic, target)
			ok(t, "PoliciesFor", err)
			if len(got) != want {
				t.Fatalf("PoliciesFor(%q): %d policies, want %d", target, len(got), want)
			}
		}
		return nil
	})
	// Replacing keeps one row; pausing is a replacement.
	weekly.PausedReason = "paused by token:root"
	update(t, s, func(tx store.Tx) error { return policies(t, tx).PutPolicy(weekly) })
	update(t, s, func(tx store.Tx) error { return policies(t, tx).DeletePolicy("one") })
	view(t, s, func(tx store.Tx) error {
		list, err := policies(t, tx).ListPolicies("", 10)
		ok(t, "ListPolicies", err)
		if len(list) != 1 || list[0].PausedReason != weekly.PausedReason {
			t.Fatalf("after replace and delete: %+v", list)
		}
		return nil
	})
	err := s.Update(context.Background(), func(tx store.Tx) error { return policies(t, tx).DeletePolicy("one") })
	wantErr(t, "deleting twice", err, store.ErrNotFound)
	bad := newPolicy("bad", "regex", ".*")
	err = s.Update(context.Background(), func(tx store.Tx) error { return policies(t, tx).PutPolicy(bad) })
	wantFailure(t, "unknown selector", err)
	bad = newPolicy("bad", store.SelectAll, "")
	bad.Period = -time.Second
	err = s.Update(context.Background(), func(tx store.Tx) error { return policies(t, tx).PutPolicy(bad) })
	wantFailure(t, "negative period", err)
}

func testScheduleRows(t *testing.T, s store.Store) {
	insertTopics(t, s, "fw/a", "fw/b", "fwx", "data/é/1")
	r := newRand(t)
	ids := insertClients(t, s, r, 2)
	early, late := base, base.Add(time.Hour)
	update(t, s, func(tx store.Tx) error {
		n, err := policies(t, tx).ScheduleTopics("fw/", late, false)
		if n != 2 {
			t.Errorf("ScheduleTopics(fw/) wrote %d rows, want 2", n)
		}
		return err
	})
	update(t, s, func(tx store.Tx) error {
		// An earlier time moves existing rows back; onlyMissing leaves them.
		if _, err := policies(t, tx).ScheduleTopics("", early, false); err != nil {
			return err
		}
		n, err := policies(t, tx).ScheduleTopics("data/é", late, true)
		if n != 0 {
			t.Errorf("ScheduleTopics onlyMissing wrote %d rows over existing ones", n)
		}
		if err != nil {
			return err
		}
		n, err = policies(t, tx).ScheduleClients(late, false)
		if n != 2 {
			t.Errorf("ScheduleClients wrote %d rows, want 2", n)
		}
		return err
	})
	view(t, s, func(tx store.Tx) error {
		d, err := policies(t, tx).GetDue(store.TargetTopic, "fw/a")
		ok(t, "GetDue", err)
		if !sameTime(d.DueAt, early) || d.Event != "" || d.LeaseOwner != "" {
			t.Fatalf("fw/a: %+v", d)
		}
		d, err = policies(t, tx).GetDue(store.TargetClient, hex.EncodeToString(ids[0][:]))
		ok(t, "GetDue client", err)
		if !sameTime(d.DueAt, late) {
			t.Fatalf("client row: %+v", d)
		}
		n, err := policies(t, tx).CountDue(late)
		ok(t, "CountDue", err)
		if n != 4 {
			t.Fatalf("CountDue: %d topics due before %v, want 4", n, late)
		}
		var all []store.Due
		var after store.Due
		for {
			page, err := policies(t, tx).ListDue(late.Add(time.Second), after, 2)
			ok(t, "ListDue", err)
			all = append(all, page...)
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1]
		}
		if len(all) != 6 || all[0].Target != "data/é/1" || all[5].Kind != store.TargetClient {
			t.Fatalf("ListDue pages: %+v", all)
		}
		return nil
	})
}

func testMergeEvent(t *testing.T, s store.Store) {
	p := func(tx store.Tx) store.PolicyTx { return policies(t, tx) }
	// A leave at base makes the row due a second later; the 99 leaves that
	// follow within that second do not move it.
	for i := range 100 {
		at := base.Add(time.Duration(i) * 10 * time.Millisecond)
		update(t, s, func(tx store.Tx) error {
			return p(tx).MergeEvent(store.TargetTopic, "t", "member_removed", at.Add(time.Second))
		})
	}
	view(t, s, func(tx store.Tx) error {
		d, err := p(tx).GetDue(store.TargetTopic, "t")
		ok(t, "GetDue", err)
		if d.Event != "member_removed" || !sameTime(d.DueAt, base.Add(time.Second)) {
			t.Fatalf("coalesced row: %+v", d)
		}
		return nil
	})
	// A schedule row without an event takes the event's time.
	update(t, s, func(tx store.Tx) error {
		if err := p(tx).PutDue(store.Due{Kind: store.TargetTopic, Target: "u", DueAt: base}); err != nil {
			return err
		}
		return p(tx).MergeEvent(store.TargetTopic, "u", "anomaly:forged", base.Add(time.Minute))
	})
	view(t, s, func(tx store.Tx) error {
		d, err := p(tx).GetDue(store.TargetTopic, "u")
		ok(t, "GetDue", err)
		if d.Event != "anomaly:forged" || !sameTime(d.DueAt, base.Add(time.Minute)) {
			t.Fatalf("merged row: %+v", d)
		}
		return nil
	})
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return p(tx).MergeEvent("device", "u", "x", base)
	})
	wantFailure(t, "unknown kind", err)
}

func testClaimDue(t *testing.T, s store.Store) {
	p := func(tx store.Tx) store.PolicyTx { return policies(t, tx) }
	update(t, s, func(tx store.Tx) error {
		for i, name := range []string{"c", "a", "b", "later"} {
			at := base.Add(time.Duration(i) * time.Second)
			if name == "later" {
				at = base.Add(time.Hour)
			}
			if err := p(tx).PutDue(store.Due{Kind: store.TargetTopic, Target: name, DueAt: at}); err != nil {
				return err
			}
		}
		return nil
	})
	now := base.Add(time.Minute)
	var first []store.Due
	update(t, s, func(tx store.Tx) (err error) {
		first, err = p(tx).ClaimDue("r1", now, time.Minute, 2)
		return err
	})
	if len(first) != 2 || first[0].Target != "c" || first[1].Target != "a" || first[0].LeaseOwner != "r1" {
		t.Fatalf("first claim: %+v", first)
	}
	var second []store.Due
	update(t, s, func(tx store.Tx) (err error) {
		second, err = p(tx).ClaimDue("r2", now, time.Minute, 10)
		return err
	})
	if len(second) != 1 || second[0].Target != "b" {
		t.Fatalf("second claim took %+v, want only b (the others are leased or not due)", second)
	}
	// Once r1's lease expired, its rows are claimable again.
	var third []store.Due
	update(t, s, func(tx store.Tx) (err error) {
		third, err = p(tx).ClaimDue("r2", now.Add(2*time.Minute), time.Minute, 10)
		return err
	})
	if len(third) != 3 {
		t.Fatalf("after the leases expired: %+v", third)
	}
	update(t, s, func(tx store.Tx) error { return p(tx).DeleteDue(store.TargetTopic, "c") })
	view(t, s, func(tx store.Tx) error {
		_, err := p(tx).GetDue(store.TargetTopic, "c")
		wantErr(t, "deleted row", err, store.ErrNotFound)
		return nil
	})
}

// testConcurrentClaimDue: replicas claiming at once never hold one row
// together.
func testConcurrentClaimDue(t *testing.T, s store.Store) {
	const rows = 200
	update(t, s, func(tx store.Tx) error {
		for i := range rows {
			d := store.Due{Kind: store.TargetTopic, Target: string(rune('a'+i%26)) + "/" + time.Duration(i).String(), DueAt: base}
			if err := policies(t, tx).PutDue(d); err != nil {
				return err
			}
		}
		return nil
	})
	var (
		mu    sync.Mutex
		seen  = map[string]string{}
		wg    sync.WaitGroup
		fails []error
	)
	for r := range 4 {
		owner := "replica" + string(rune('0'+r))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var got []store.Due
				err := s.Update(context.Background(), func(tx store.Tx) (err error) {
					got, err = policies(t, tx).ClaimDue(owner, base.Add(time.Second), time.Hour, 7)
					return err
				})
				mu.Lock()
				if err != nil {
					fails = append(fails, err)
				}
				for _, d := range got {
					if prev, dup := seen[d.Target]; dup {
						fails = append(fails, &dupClaim{d.Target, prev, owner})
					}
					seen[d.Target] = owner
				}
				mu.Unlock()
				if err != nil || len(got) == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(fails) > 0 {
		t.Fatal(fails[0])
	}
	if len(seen) != rows {
		t.Fatalf("%d rows claimed, want %d", len(seen), rows)
	}
}

type dupClaim struct{ target, first, second string }

func (d *dupClaim) Error() string {
	return "row " + d.target + " claimed by " + d.first + " and " + d.second
}

func testRotationRecords(t *testing.T, s store.Store) {
	p := func(tx store.Tx) store.PolicyTx { return policies(t, tx) }
	var ids []int64
	update(t, s, func(tx store.Tx) error {
		for i, target := range []string{"fw", "data", "fw"} {
			id, err := p(tx).InsertRotation(store.Rotation{
				Kind: store.TargetTopic, Target: target, Policy: "weekly", Reason: "period",
				DueAt: base, FiredAt: base.Add(time.Duration(i) * time.Hour), Version: uint64(i + 2),
				Commands: 10, State: store.RotationStarted, Owner: "r1",
			})
			ids = append(ids, id)
			if err != nil {
				return err
			}
		}
		return p(tx).SettleRotation(ids[0], store.RotationStuck, 4, "4 of 10 behind", base.Add(time.Hour))
	})
	if !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("rotation ids do not grow: %v", ids)
	}
	view(t, s, func(tx store.Tx) error {
		list, err := p(tx).ListRotations(store.RotationFilter{Target: "fw"}, 0, 10)
		ok(t, "ListRotations", err)
		if len(list) != 2 || list[0].State != store.RotationStuck || list[0].Behind != 4 ||
			!sameTime(list[0].SettledAt, base.Add(time.Hour)) || list[1].Version != 4 || list[1].Owner != "r1" {
			t.Fatalf("ListRotations(fw): %+v", list)
		}
		n, err := p(tx).CountRotations(store.RotationFilter{State: store.RotationStarted, FiredBefore: base.Add(90 * time.Minute)})
		ok(t, "CountRotations", err)
		if n != 1 {
			t.Fatalf("started before +90m: %d, want 1", n)
		}
		sum, err := p(tx).SumBehind(store.RotationFilter{Policy: "weekly", State: store.RotationStuck})
		ok(t, "SumBehind", err)
		if sum != 4 {
			t.Fatalf("SumBehind: %d", sum)
		}
		return nil
	})
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return p(tx).SettleRotation(9999, store.RotationConverged, 0, "", base)
	})
	wantErr(t, "unknown rotation", err, store.ErrNotFound)
	// A rotation is settled once: a second replica's settling fails and
	// changes nothing.
	err = s.Update(context.Background(), func(tx store.Tx) error {
		return p(tx).SettleRotation(ids[0], store.RotationConverged, 0, "settled again", base.Add(2*time.Hour))
	})
	wantErr(t, "settling a settled rotation", err, store.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		list, err := p(tx).ListRotations(store.RotationFilter{}, ids[0]-1, 1)
		ok(t, "ListRotations", err)
		if len(list) != 1 || list[0].State != store.RotationStuck || list[0].Detail != "4 of 10 behind" {
			t.Fatalf("a settled rotation was settled again: %+v", list)
		}
		return nil
	})
}

func testClientKeyTime(t *testing.T, s store.Store) {
	ids := insertClients(t, s, newRand(t), 1)
	view(t, s, func(tx store.Tx) error {
		at, err := policies(t, tx).ClientKeyCreatedAt(ids[0])
		ok(t, "ClientKeyCreatedAt", err)
		if !sameTime(at, base) {
			t.Fatalf("key of a new client made at %v, want its creation %v", at, base)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return policies(t, tx).SetClientKeyCreatedAt(ids[0], base.Add(time.Hour)) })
	view(t, s, func(tx store.Tx) error {
		at, err := policies(t, tx).ClientKeyCreatedAt(ids[0])
		ok(t, "ClientKeyCreatedAt", err)
		if !sameTime(at, base.Add(time.Hour)) {
			t.Fatalf("key made at %v after the change", at)
		}
		return nil
	})
}

// testC2KeyCounts: the devices of the clients that existed when a C2 key
// was made are counted against it: acknowledged, behind and acknowledging,
// behind and not (or not known to be) acknowledging; later clients are not.
func testC2KeyCounts(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 6)
	late := newClient(r, "")
	late.CreatedAt = base.Add(2 * time.Hour)
	update(t, s, func(tx store.Tx) error { return tx.InsertClient(late) })
	key, old := []byte("c2 public key, current"), []byte("c2 public key, previous")
	states := []store.DeviceState{
		{ClientID: ids[0], AckMode: store.AckAuto, AcksSeen: true, C2KeyAcked: key}, // current
		{ClientID: ids[1], AckMode: store.AckAuto, AcksSeen: true, C2KeyAcked: old}, // behind, acknowledges
		// ids[2] has no state row: behind, not known to acknowledge
		{ClientID: ids[3], AckMode: store.AckYes},                 // behind, acknowledges
		{ClientID: ids[4], AckMode: store.AckNo, C2KeyAcked: key}, // current
		{ClientID: ids[5], AckMode: store.AckNo, C2KeyAcked: old}, // behind, does not acknowledge
		{ClientID: late.ID, AckMode: store.AckYes},                // joined after the key: not counted
	}
	update(t, s, func(tx store.Tx) error {
		for _, ds := range states {
			if err := tx.PutDeviceState(ds); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		c, err := policies(t, tx).C2KeyCounts(key, base.Add(time.Hour))
		ok(t, "C2KeyCounts", err)
		if want := (store.C2KeyCounts{Clients: 6, Current: 2, BehindAcknowledging: 2}); c != want {
			t.Fatalf("C2KeyCounts: %+v, want %+v", c, want)
		}
		c, err = policies(t, tx).C2KeyCounts(old, base.Add(3*time.Hour))
		ok(t, "C2KeyCounts(old)", err)
		if want := (store.C2KeyCounts{Clients: 7, Current: 2, BehindAcknowledging: 3}); c != want {
			t.Fatalf("C2KeyCounts(previous key): %+v, want %+v", c, want)
		}
		c, err = policies(t, tx).C2KeyCounts(key, base.Add(-time.Second))
		ok(t, "C2KeyCounts(before every client)", err)
		if c != (store.C2KeyCounts{}) {
			t.Fatalf("C2KeyCounts before any client existed: %+v", c)
		}
		_, err = policies(t, tx).C2KeyCounts(nil, base)
		wantFailure(t, "C2KeyCounts without a key", err)
		return nil
	})
}

// testIdleClients: the devices last heard from before a time, paged by
// last contact then id (ties included once), never-heard devices left out.
func testIdleClients(t *testing.T, s store.Store) {
	ids := insertClients(t, s, newRand(t), 5)
	seen := []time.Time{base.Add(time.Hour), base, base.Add(time.Hour), {}, base.Add(3 * time.Hour)}
	update(t, s, func(tx store.Tx) error {
		for i, id := range ids {
			if err := tx.PutDeviceState(store.DeviceState{ClientID: id, AckMode: store.AckAuto, LastSeen: seen[i]}); err != nil {
				return err
			}
		}
		return nil
	})
	// ids[1] at base, then ids[0] and ids[2] at base+1h (by id); ids[3]
	// never heard from; ids[4] too recent.
	want := []store.SeenClient{{ID: ids[1], LastSeen: base}, {ID: ids[0], LastSeen: base.Add(time.Hour)}, {ID: ids[2], LastSeen: base.Add(time.Hour)}}
	var got []store.SeenClient
	view(t, s, func(tx store.Tx) error {
		var after store.SeenClient
		for {
			page, err := policies(t, tx).IdleClients(after, base.Add(2*time.Hour), 2)
			ok(t, "IdleClients", err)
			got = append(got, page...)
			if len(page) < 2 {
				return nil
			}
			after = page[len(page)-1]
		}
	})
	if len(got) != len(want) {
		t.Fatalf("IdleClients: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ID != want[i].ID || !sameTime(got[i].LastSeen, want[i].LastSeen) {
			t.Fatalf("IdleClients: %+v, want %+v", got, want)
		}
	}
	view(t, s, func(tx store.Tx) error {
		page, err := policies(t, tx).IdleClients(store.SeenClient{LastSeen: base.Add(time.Hour), ID: ids[0]}, base.Add(2*time.Hour), 10)
		ok(t, "IdleClients after a tie", err)
		if len(page) != 1 || page[0].ID != ids[2] {
			t.Fatalf("after the first of a tie: %+v", page)
		}
		_, err = policies(t, tx).IdleClients(store.SeenClient{}, base, 0)
		wantFailure(t, "IdleClients with limit 0", err)
		return nil
	})
}

// BenchC2KeyCounts measures C2KeyCounts over the clients of s (none of
// them acknowledged the key): the settling of a C2 key pair rotation reads
// it at most once a minute per replica.
func BenchC2KeyCounts(b *testing.B, s store.Store, clients int64) {
	key := []byte("c2 public key")
	for b.Loop() {
		err := s.View(context.Background(), func(tx store.Tx) error {
			c, err := policies(b, tx).C2KeyCounts(key, base.Add(time.Hour))
			if err == nil && c.Clients != clients {
				b.Fatalf("C2KeyCounts counted %d clients, want %d", c.Clients, clients)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchIdleClients gives every client of ids a last contact (a second
// apart) and measures one page of 1,000 idle devices, from the start of a
// backlog of half of them: the scheduler's look for idle devices reads
// such a page every AutomationConfig.Rescan, or every tick while it
// catches up.
func BenchIdleClients(b *testing.B, s store.Store, ids []e4.ID) {
	const chunk = 10_000
	for i := 0; i < len(ids); i += chunk {
		err := s.Update(context.Background(), func(tx store.Tx) error {
			for j := i; j < min(len(ids), i+chunk); j++ {
				ds := store.DeviceState{ClientID: ids[j], AckMode: store.AckAuto, AcksSeen: true, LastSeen: base.Add(time.Duration(j) * time.Second)}
				if err := tx.PutDeviceState(ds); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	before := base.Add(time.Duration(len(ids)/2) * time.Second)
	b.ResetTimer()
	for b.Loop() {
		err := s.View(context.Background(), func(tx store.Tx) error {
			page, err := policies(b, tx).IdleClients(store.SeenClient{}, before, 1000)
			if err == nil && len(page) != min(1000, len(ids)/2) {
				b.Fatalf("IdleClients: %d devices, want %d", len(page), min(1000, len(ids)/2))
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func testTopicMessages(t *testing.T, s store.Store) {
	insertTopics(t, s, "m/a")
	view(t, s, func(tx store.Tx) error {
		has, err := policies(t, tx).HasBudgetPolicies()
		ok(t, "HasBudgetPolicies", err)
		if has {
			t.Fatal("HasBudgetPolicies without policies")
		}
		return nil
	})
	budget := newPolicy("budget", store.SelectPrefix, "m/")
	budget.Period, budget.Jitter, budget.MaxMessages = 0, 0, 1<<40
	update(t, s, func(tx store.Tx) error { return policies(t, tx).PutPolicy(budget) })
	view(t, s, func(tx store.Tx) error {
		got, err := policies(t, tx).GetPolicy("budget")
		ok(t, "GetPolicy", err)
		if got.MaxMessages != 1<<40 {
			t.Fatalf("MaxMessages round trip: %d", got.MaxMessages)
		}
		has, err := policies(t, tx).HasBudgetPolicies()
		ok(t, "HasBudgetPolicies", err)
		if !has {
			t.Fatal("HasBudgetPolicies with a budget policy: false")
		}
		return nil
	})
	add := func(topic string, version uint64, n int64) (int64, bool) {
		t.Helper()
		var count int64
		var counted bool
		update(t, s, func(tx store.Tx) (err error) {
			count, counted, err = policies(t, tx).AddTopicMessages(topic, version, n)
			return err
		})
		return count, counted
	}
	messages := func(want uint64, wantN int64) {
		t.Helper()
		view(t, s, func(tx store.Tx) error {
			v, n, err := policies(t, tx).TopicMessages("m/a")
			ok(t, "TopicMessages", err)
			if v != want || n != wantN {
				t.Fatalf("TopicMessages: version %d, %d messages; want version %d, %d", v, n, want, wantN)
			}
			return nil
		})
	}
	messages(1, 0)
	if n, counted := add("m/a", 1, 5); !counted || n != 5 {
		t.Fatalf("adding 5: count %d, counted %v", n, counted)
	}
	if n, counted := add("m/a", 1, 0); !counted || n != 5 {
		t.Fatalf("adding 0: count %d, counted %v", n, counted)
	}
	if _, counted := add("m/a", 2, 3); counted {
		t.Fatal("messages counted under a version the topic does not have")
	}
	if _, counted := add("m/none", 1, 3); counted {
		t.Fatal("messages counted for an unknown topic")
	}
	messages(1, 5)
	err := s.Update(context.Background(), func(tx store.Tx) error {
		_, _, err := policies(t, tx).AddTopicMessages("m/a", 1, -1)
		return err
	})
	wantFailure(t, "adding a negative count", err)
	err = s.View(context.Background(), func(tx store.Tx) error {
		_, _, err := policies(t, tx).TopicMessages("m/none")
		return err
	})
	wantErr(t, "TopicMessages of an unknown topic", err, store.ErrNotFound)
	bad := budget
	bad.MaxMessages = -1
	err = s.Update(context.Background(), func(tx store.Tx) error { return policies(t, tx).PutPolicy(bad) })
	wantFailure(t, "negative message budget", err)

	// A re-seal keeps the version and the count; a new version starts at 0.
	update(t, s, func(tx store.Tx) error { return tx.UpdateTopicKey("m/a", []byte("resealed"), nil, 1, base) })
	messages(1, 5)
	update(t, s, func(tx store.Tx) error { return tx.UpdateTopicKey("m/a", []byte("k2"), nil, 2, base) })
	messages(2, 0)
	if _, counted := add("m/a", 1, 7); counted {
		t.Fatal("messages under the replaced version counted after the rotation")
	}
	messages(2, 0)

	// Replicas adding at once: no increment is lost.
	const writers, adds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*adds)
	for range writers {
		wg.Go(func() {
			for range adds {
				errs <- s.Update(context.Background(), func(tx store.Tx) error {
					_, counted, err := policies(t, tx).AddTopicMessages("m/a", 2, 2)
					if err == nil && !counted {
						t.Error("concurrent add not counted")
					}
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		ok(t, "concurrent AddTopicMessages", err)
	}
	messages(2, writers*adds*2)
}
