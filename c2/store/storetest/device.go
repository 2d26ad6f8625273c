package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// The conformance tests of the device state (store.DeviceTx and
// store.DeviceStore).

func getDeviceState(t testing.TB, s store.Store, id e4.ID) store.DeviceState {
	t.Helper()
	var ds store.DeviceState
	view(t, s, func(tx store.Tx) (err error) {
		ds, err = tx.GetDeviceState(id)
		return err
	})
	return ds
}

// testDeviceStateRoundTrip: a client never heard of has the default state;
// what is put comes back (times in UTC microseconds), and a client delete
// removes it.
func testDeviceStateRoundTrip(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 2)
	ds := getDeviceState(t, s, ids[0])
	if ds.ClientID != ids[0] || ds.AckMode != store.AckAuto || ds.AcksSeen || !ds.LastSeen.IsZero() || ds.PrevSealedKey != nil || ds.Acknowledges() {
		t.Fatalf("default state %+v", ds)
	}
	want := store.DeviceState{
		ClientID: ids[0], AckMode: store.AckNo, AcksSeen: true, LastSeen: base, LastSync: base.Add(time.Second),
		PrevSealedKey: []byte("sealed previous key"), KeyChangedAt: base.Add(2 * time.Second), KeyState: store.KeyOld,
		StalledReason: "broker \x00refused", StalledAt: base.Add(3 * time.Second), C2KeyAcked: []byte("c2 public"),
	}
	update(t, s, func(tx store.Tx) error { return tx.PutDeviceState(want) })
	got := getDeviceState(t, s, ids[0])
	if got.AckMode != store.AckNo || !got.AcksSeen || got.Acknowledges() || string(got.PrevSealedKey) != "sealed previous key" ||
		got.KeyState != store.KeyOld || got.StalledReason != "broker refused" || string(got.C2KeyAcked) != "c2 public" ||
		!got.LastSeen.Equal(base.Truncate(time.Microsecond)) || got.LastSeen.Location() != time.UTC ||
		!got.LastSync.Equal(base.Add(time.Second).Truncate(time.Microsecond)) ||
		!got.KeyChangedAt.Equal(base.Add(2*time.Second).Truncate(time.Microsecond)) ||
		!got.StalledAt.Equal(base.Add(3*time.Second).Truncate(time.Microsecond)) {
		t.Fatalf("round trip: %+v", got)
	}
	// Clearing goes back to NULLs.
	cleared := got
	cleared.PrevSealedKey, cleared.KeyChangedAt, cleared.KeyState, cleared.StalledReason, cleared.StalledAt = nil, time.Time{}, store.KeySettled, "", time.Time{}
	update(t, s, func(tx store.Tx) error { return tx.PutDeviceState(cleared) })
	if got := getDeviceState(t, s, ids[0]); got.PrevSealedKey != nil || !got.KeyChangedAt.IsZero() || !got.StalledAt.IsZero() {
		t.Fatalf("after clearing: %+v", got)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetDeviceState(randomID(r))
		wantErr(t, "GetDeviceState of an unknown client", err, store.ErrNotFound)
		wantErr(t, "PutDeviceState of an unknown client", tx.PutDeviceState(store.DeviceState{ClientID: randomID(r)}), store.ErrNotFound)
		wantFailure(t, "PutDeviceState with an unknown mode", tx.PutDeviceState(store.DeviceState{ClientID: ids[1], AckMode: "maybe"}))
		wantFailure(t, "PutDeviceState with an unknown key state", tx.PutDeviceState(store.DeviceState{ClientID: ids[1], KeyState: "lost"}))
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.DeleteClient(ids[0]) })
	update(t, s, func(tx store.Tx) error {
		return tx.InsertClient(store.Client{ID: ids[0], SealedKey: []byte("k"), CreatedAt: base})
	})
	if got := getDeviceState(t, s, ids[0]); got.AckMode != store.AckAuto || got.AcksSeen {
		t.Fatalf("a client deleted and added again kept its state: %+v", got)
	}
}

// testTopicAcks: acknowledged versions per membership, counted per
// topic, per client and fleet-wide, and paged.
func testTopicAcks(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 5)
	insertTopics(t, s, "a", "b")
	addMembers(t, s, "a", ids...)
	addMembers(t, s, "b", ids[0])
	update(t, s, func(tx store.Tx) error {
		if err := tx.UpdateTopicKey("a", []byte("k3"), nil, 3, base); err != nil {
			return err
		}
		// ids[0] and ids[1] hold version 3, ids[2] version 2; the others
		// nothing. ids[1] acknowledges, ids[3] is declared not to.
		for i, v := range []uint64{3, 3, 2} {
			if err := tx.SetTopicAcked(ids[i], "a", v, base.Add(time.Duration(i)*time.Second)); err != nil {
				return err
			}
		}
		if err := tx.PutDeviceState(store.DeviceState{ClientID: ids[1], AcksSeen: true}); err != nil {
			return err
		}
		if err := tx.PutDeviceState(store.DeviceState{ClientID: ids[2], AckMode: store.AckYes}); err != nil {
			return err
		}
		return tx.PutDeviceState(store.DeviceState{ClientID: ids[3], AckMode: store.AckNo, StalledReason: "x"})
	})
	err := s.Update(t.Context(), func(tx store.Tx) error { return tx.SetTopicAcked(ids[1], "b", 1, base) })
	wantErr(t, "SetTopicAcked of a non-member", err, store.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		c, err := tx.TopicCounts("a")
		ok(t, "TopicCounts", err)
		if c != (store.TopicCounts{Version: 3, Members: 5, Current: 2, BehindAcknowledging: 1}) {
			t.Fatalf("TopicCounts: %+v", c)
		}
		_, err = tx.TopicCounts("nope")
		wantErr(t, "TopicCounts of an unknown topic", err, store.ErrNotFound)
		behind, err := tx.TopicBehind("a", e4.ID{}, 2)
		ok(t, "TopicBehind", err)
		if len(behind) != 2 || behind[0].ClientID != ids[2] || behind[0].AckedVersion != 2 || !behind[0].Acknowledges ||
			behind[1].ClientID != ids[3] || behind[1].Acknowledges || behind[1].AckedVersion != 0 {
			t.Fatalf("TopicBehind page 1: %+v", behind)
		}
		rest, err := tx.TopicBehind("a", behind[1].ClientID, 2)
		ok(t, "TopicBehind page 2", err)
		if len(rest) != 1 || rest[0].ClientID != ids[4] {
			t.Fatalf("TopicBehind page 2: %+v", rest)
		}
		states, err := tx.MemberStates(ids[0], "", 10)
		ok(t, "MemberStates", err)
		if len(states) != 2 || states[0] != (store.MemberState{Topic: "a", WantVersion: 3, AckedVersion: 3, AckedAt: base.Truncate(time.Microsecond).UTC()}) ||
			states[1].Topic != "b" || !states[1].Behind() || states[0].Behind() {
			t.Fatalf("MemberStates: %+v", states)
		}
		page, err := tx.MemberStates(ids[0], "a", 10)
		ok(t, "MemberStates after a", err)
		if len(page) != 1 || page[0].Topic != "b" {
			t.Fatalf("MemberStates after a: %+v", page)
		}
		n, err := tx.CountMembersBehind(ids[0])
		ok(t, "CountMembersBehind", err)
		if n != 1 {
			t.Fatalf("CountMembersBehind = %d, want 1", n)
		}
		_, err = tx.CountMembersBehind(randomID(r))
		wantErr(t, "CountMembersBehind of an unknown client", err, store.ErrNotFound)
		f, err := tx.FleetCounts()
		ok(t, "FleetCounts", err)
		want := store.FleetCounts{Clients: 5, Acknowledging: 2, NotAcknowledging: 1, Stalled: 1, MembershipsBehind: 4, ClientsBehind: 4}
		if f != want {
			t.Fatalf("FleetCounts: %+v, want %+v", f, want)
		}
		return nil
	})
	// A device that lost its key goes back to 0.
	update(t, s, func(tx store.Tx) error { return tx.SetTopicAcked(ids[1], "a", 0, base) })
	view(t, s, func(tx store.Tx) error {
		c, err := tx.TopicCounts("a")
		ok(t, "TopicCounts", err)
		if c.Current != 1 || c.BehindAcknowledging != 2 {
			t.Fatalf("TopicCounts after a loss: %+v", c)
		}
		return nil
	})
}

// testItemsToRepair: memberships behind, split by whether their device
// acknowledges, without those with a command pending or sent recently.
func testItemsToRepair(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 4)
	insertTopics(t, s, "a", "b")
	addMembers(t, s, "a", ids...)
	addMembers(t, s, "b", ids[0])
	update(t, s, func(tx store.Tx) error {
		for _, id := range ids[:3] {
			if err := tx.PutDeviceState(store.DeviceState{ClientID: id, AcksSeen: true}); err != nil {
				return err
			}
		}
		// ids[1] is current on a; ids[3] never acknowledges.
		return tx.SetTopicAcked(ids[1], "a", 1, base)
	})
	pending := newCommand(r, ids[2], "SetTopicKey", "a")
	recent := newCommand(r, ids[0], "SetTopicKey", "b")
	old := newCommand(r, ids[0], "SetTopicKey", "a")
	enqueue(t, s, old, recent)
	ctx := t.Context()
	claimed, err := s.ClaimCommands(ctx, "d", base, lease, 10)
	ok(t, "ClaimCommands", err)
	wantIDs(t, "first claim", commandIDs(claimed), old.ID)
	ok(t, "MarkSent", s.MarkSent(ctx, "d", commandIDs(claimed), base))
	claimed, err = s.ClaimCommands(ctx, "d", base, lease, 10)
	ok(t, "ClaimCommands", err)
	wantIDs(t, "second claim", commandIDs(claimed), recent.ID)
	ok(t, "MarkSent", s.MarkSent(ctx, "d", commandIDs(claimed), base.Add(time.Hour)))
	enqueue(t, s, pending)
	// pending (of ids[2]) stays pending; old was sent at base, recent at
	// base+1h.
	items := func(acks bool, before time.Time, after store.RepairItem, limit int) []store.RepairItem {
		var out []store.RepairItem
		view(t, s, func(tx store.Tx) (err error) {
			out, err = tx.ItemsToRepair(store.RepairFilter{Acknowledging: acks, SentBefore: before, After: after, Limit: limit})
			return err
		})
		return out
	}
	got := items(true, base.Add(time.Minute), store.RepairItem{}, 10)
	if len(got) != 1 || got[0] != (store.RepairItem{ClientID: ids[0], Topic: "a"}) {
		t.Fatalf("repairs of acknowledging devices: %+v", got)
	}
	got = items(true, base.Add(2*time.Hour), store.RepairItem{}, 10)
	if len(got) != 2 || got[1] != (store.RepairItem{ClientID: ids[0], Topic: "b"}) {
		t.Fatalf("repairs later: %+v", got)
	}
	if got = items(true, base.Add(2*time.Hour), got[0], 10); len(got) != 1 || got[0].Topic != "b" {
		t.Fatalf("repairs after the first: %+v", got)
	}
	// Not heard from since it was sent (no LastSeen): not again before
	// IdleBefore passes the send; heard from since: again.
	idle := func(before time.Time) []store.RepairItem {
		var out []store.RepairItem
		view(t, s, func(tx store.Tx) (err error) {
			out, err = tx.ItemsToRepair(store.RepairFilter{Acknowledging: true, SentBefore: base.Add(time.Minute), IdleBefore: before, Limit: 10})
			return err
		})
		return out
	}
	if got := idle(base.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("repairs of a device not heard from: %+v", got)
	}
	if got := idle(base.Add(time.Second)); len(got) != 1 {
		t.Fatalf("repairs once the idle time passed: %+v", got)
	}
	update(t, s, func(tx store.Tx) error {
		return tx.PutDeviceState(store.DeviceState{ClientID: ids[0], AcksSeen: true, LastSeen: base.Add(time.Second)})
	})
	if got := idle(base.Add(-time.Hour)); len(got) != 1 {
		t.Fatalf("repairs of a device heard from since: %+v", got)
	}
	got = items(false, base.Add(time.Minute), store.RepairItem{}, 10)
	if len(got) != 1 || got[0] != (store.RepairItem{ClientID: ids[3], Topic: "a"}) {
		t.Fatalf("resends of devices that do not acknowledge: %+v", got)
	}
	if got = items(true, base.Add(2*time.Hour), store.RepairItem{}, 1); len(got) != 1 {
		t.Fatalf("limit 1 gave %d", len(got))
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.ItemsToRepair(store.RepairFilter{})
		wantFailure(t, "ItemsToRepair without a limit", err)
		return nil
	})
}

// testSupersede: pending commands by client, target and kind become
// superseded, except those a dispatcher holds; others stay.
func testSupersede(t *testing.T, s store.Store) {
	r := newRand(t)
	a, b := randomID(r), randomID(r)
	aKey := newCommand(r, a, "SetTopicKey", "t")
	aRemove := newCommand(r, a, "RemoveTopic", "t")
	aOther := newCommand(r, a, "SetTopicKey", "u")
	bKey := newCommand(r, b, "SetTopicKey", "t")
	enqueue(t, s, aKey, aRemove, aOther, bKey)
	// b's command is held by a dispatcher: it is not superseded.
	claimed, err := s.ClaimCommands(t.Context(), "d", base, lease, 10)
	ok(t, "ClaimCommands", err)
	wantIDs(t, "claim", commandIDs(claimed), aKey.ID, bKey.ID)
	ok(t, "Retry", s.Retry(t.Context(), "d", aKey.ID, base, "try again"))
	var n int64
	update(t, s, func(tx store.Tx) (err error) {
		has, err := tx.HasPendingCommand(a, "t", "SetTopicKey")
		ok(t, "HasPendingCommand", err)
		if !has {
			t.Fatal("HasPendingCommand missed a pending command")
		}
		n, err = tx.SupersedeCommands(nil, "t", base, "SetTopicKey")
		return err
	})
	if n != 1 {
		t.Fatalf("superseded %d, want 1", n)
	}
	if got := getCommand(t, s, aKey.ID); got.State != store.CommandSuperseded {
		t.Fatalf("a's SetTopicKey: %+v", got)
	}
	for _, c := range []store.Command{aRemove, aOther, bKey} {
		if got := getCommand(t, s, c.ID); got.State != store.CommandPending {
			t.Fatalf("%s %s of %s is %s, want pending", c.Kind, c.Target, c.ClientID, got.State)
		}
	}
	view(t, s, func(tx store.Tx) error {
		has, err := tx.HasPendingCommand(a, "t", "SetTopicKey")
		ok(t, "HasPendingCommand", err)
		hasAny, err := tx.HasPendingCommand(a, "t")
		ok(t, "HasPendingCommand of any kind", err)
		if has || !hasAny {
			t.Fatalf("HasPendingCommand after superseding: %v, %v", has, hasAny)
		}
		n, err := tx.CountCommands(store.CommandFilter{State: store.CommandSuperseded})
		ok(t, "CountCommands of superseded", err)
		if n != 1 {
			t.Fatalf("%d superseded listed", n)
		}
		_, err = tx.SupersedeCommands(nil, "", base)
		wantFailure(t, "SupersedeCommands of everything", err)
		return nil
	})
	// Everything of a client.
	update(t, s, func(tx store.Tx) (err error) {
		n, err = tx.SupersedeCommands(&a, "", base)
		return err
	})
	if n != 2 {
		t.Fatalf("superseded %d of a's, want 2", n)
	}
	wantIDs(t, "claim after superseding", commandIDs(mustClaim(t, s, "e", base.Add(2*lease))), bKey.ID)
}

func mustClaim(t testing.TB, s store.Store, owner string, at time.Time) []store.Command {
	t.Helper()
	cmds, err := s.ClaimCommands(context.Background(), owner, at, lease, 10)
	ok(t, "ClaimCommands", err)
	return cmds
}

// testReserveTimestamps: a client's command timestamps grow strictly, are
// held beyond maxAhead, and survive as the store does.
func testReserveTimestamps(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 2)
	ctx := t.Context()
	now := base
	sec := now.Unix()
	got, err := s.ReserveTimestamps(ctx, []e4.ID{ids[0], ids[0], ids[1], ids[0]}, now, 2*time.Second)
	ok(t, "ReserveTimestamps", err)
	if want := []int64{sec, sec + 1, sec, sec + 2}; !equalInts(got, want) {
		t.Fatalf("timestamps %v, want %v", got, want)
	}
	got, err = s.ReserveTimestamps(ctx, []e4.ID{ids[0], ids[1]}, now, 2*time.Second)
	ok(t, "ReserveTimestamps", err)
	if want := []int64{0, sec + 1}; !equalInts(got, want) {
		t.Fatalf("timestamps beyond the lead %v, want %v (held)", got, want)
	}
	// The clock moves on: the next one is the clock again.
	got, err = s.ReserveTimestamps(ctx, []e4.ID{ids[0], randomID(r)}, now.Add(time.Minute), -1)
	ok(t, "ReserveTimestamps", err)
	if want := []int64{sec + 60, sec + 60}; !equalInts(got, want) {
		t.Fatalf("timestamps a minute later %v, want %v", got, want)
	}
	// Without any lead, a second command in the same second waits.
	got, err = s.ReserveTimestamps(ctx, []e4.ID{ids[0]}, now.Add(time.Minute), -1)
	ok(t, "ReserveTimestamps", err)
	if got[0] != 0 {
		t.Fatalf("a second command without lead got %d, want 0 (held)", got[0])
	}
	// Device state writes keep the timestamp.
	update(t, s, func(tx store.Tx) error { return tx.PutDeviceState(store.DeviceState{ClientID: ids[0]}) })
	got, err = s.ReserveTimestamps(ctx, []e4.ID{ids[0]}, now, time.Hour)
	ok(t, "ReserveTimestamps", err)
	if got[0] != sec+61 {
		t.Fatalf("after a state write: %d, want %d", got[0], sec+61)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testPostpone: a held command is released for later without counting an
// attempt.
func testPostpone(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newCommand(r, randomID(r), "k", "1")
	enqueue(t, s, c)
	ctx := t.Context()
	wantIDs(t, "claim", claim(t, s, "d", 0, 10), c.ID)
	wantErr(t, "Postpone by another owner", s.Postpone(ctx, "e", c.ID, base.Add(time.Second)), store.ErrLeaseLost)
	ok(t, "Postpone", s.Postpone(ctx, "d", c.ID, base.Add(time.Second)))
	wantIDs(t, "claim before the time", claim(t, s, "d", 0, 10))
	wantIDs(t, "claim at the time", claim(t, s, "d", time.Second, 10), c.ID)
	if got := getCommand(t, s, c.ID); got.Attempts != 0 || got.State != store.CommandPending {
		t.Fatalf("after Postpone: %+v", got)
	}
}

// testKeyChangesAndLinkSources: the listings of pending key changes and of
// link sources, paged.
func testKeyChangesAndLinkSources(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 4)
	update(t, s, func(tx store.Tx) error {
		for _, id := range []e4.ID{ids[1], ids[3]} {
			err := tx.PutDeviceState(store.DeviceState{ClientID: id, PrevSealedKey: []byte("old"), KeyState: store.KeyChanging, KeyChangedAt: base})
			if err != nil {
				return err
			}
		}
		for _, src := range []e4.ID{ids[0], ids[1], ids[3]} {
			if err := tx.AddLink(src, ids[2]); err != nil {
				return err
			}
		}
		return tx.PutDeviceState(store.DeviceState{ClientID: ids[0], StalledReason: "x"})
	})
	view(t, s, func(tx store.Tx) error {
		changes, err := tx.ListKeyChanges(e4.ID{}, 1)
		ok(t, "ListKeyChanges", err)
		if len(changes) != 1 || changes[0].ClientID != ids[1] || string(changes[0].PrevSealedKey) != "old" || changes[0].KeyState != store.KeyChanging {
			t.Fatalf("ListKeyChanges page 1: %+v", changes)
		}
		changes, err = tx.ListKeyChanges(ids[1], 10)
		ok(t, "ListKeyChanges page 2", err)
		if len(changes) != 1 || changes[0].ClientID != ids[3] {
			t.Fatalf("ListKeyChanges page 2: %+v", changes)
		}
		sources, err := tx.LinkSources(ids[2], ids[0], 10)
		ok(t, "LinkSources", err)
		if len(sources) != 2 || sources[0] != ids[1] || sources[1] != ids[3] {
			t.Fatalf("LinkSources: %v", sources)
		}
		_, err = tx.LinkSources(randomID(r), e4.ID{}, 10)
		wantErr(t, "LinkSources of an unknown client", err, store.ErrNotFound)
		return nil
	})
	// Acknowledged public keys: ids[2]'s device holds the current key of
	// ids[0], an old one of ids[1], none of ids[3].
	update(t, s, func(tx store.Tx) error {
		for i, id := range ids {
			if err := tx.UpdateClientKey(id, nil, []byte{byte(i), 1, 2, 3}); err != nil {
				return err
			}
		}
		if err := tx.SetLinkAcked(ids[0], ids[2], []byte{0, 1, 2, 3}, base); err != nil {
			return err
		}
		return tx.SetLinkAcked(ids[1], ids[2], []byte("old"), base)
	})
	err := s.Update(t.Context(), func(tx store.Tx) error { return tx.SetLinkAcked(ids[2], ids[0], []byte("k"), base) })
	wantErr(t, "SetLinkAcked without a link", err, store.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		links, behind, err := tx.CountLinksBehind(ids[2])
		ok(t, "CountLinksBehind", err)
		if links != 3 || behind != 2 {
			t.Fatalf("CountLinksBehind = %d, %d; want 3, 2", links, behind)
		}
		links, behind, err = tx.CountLinksBehind(ids[0])
		ok(t, "CountLinksBehind without links", err)
		if links != 0 || behind != 0 {
			t.Fatalf("CountLinksBehind without links = %d, %d", links, behind)
		}
		_, _, err = tx.CountLinksBehind(randomID(r))
		wantErr(t, "CountLinksBehind of an unknown client", err, store.ErrNotFound)
		return nil
	})
	ok(t, "ClearStalled", s.ClearStalled(t.Context(), []e4.ID{ids[0], ids[1], randomID(r)}))
	if got := getDeviceState(t, s, ids[0]); got.StalledReason != "" || !got.StalledAt.IsZero() {
		t.Fatalf("after ClearStalled: %+v", got)
	}
}

// testAcknowledgeSent: an acknowledgement of a command already sent
// records when; a refusal fails it.
func testAcknowledgeSent(t *testing.T, s store.Store) {
	r := newRand(t)
	client := randomID(r)
	acked, refused := newCommand(r, client, "k", "1"), newCommand(r, client, "k", "2")
	enqueue(t, s, acked, refused)
	ctx := t.Context()
	for range 2 {
		claimed := mustClaim(t, s, "d", base)
		ok(t, "MarkSent", s.MarkSent(ctx, "d", commandIDs(claimed), base))
	}
	ok(t, "Acknowledge", s.Acknowledge(ctx, acked.ID, base.Add(time.Second), ""))
	got := getCommand(t, s, acked.ID)
	if got.State != store.CommandSent || !got.SentAt.Equal(base.Truncate(time.Microsecond)) || !got.AckedAt.Equal(base.Add(time.Second).Truncate(time.Microsecond)) {
		t.Fatalf("acknowledged after sent: %+v", got)
	}
	wantErr(t, "Acknowledge twice", s.Acknowledge(ctx, acked.ID, base, ""), store.ErrLeaseLost)
	ok(t, "refusal", s.Acknowledge(ctx, refused.ID, base, "refused"))
	if got := getCommand(t, s, refused.ID); got.State != store.CommandFailed || got.LastError != "refused" {
		t.Fatalf("refused after sent: %+v", got)
	}
	// The same inside a transaction.
	inTx, pendingOne := newCommand(r, client, "k", "3"), newCommand(r, randomID(r), "k", "4")
	enqueue(t, s, inTx, pendingOne)
	ok(t, "MarkSent", s.MarkSent(ctx, "d", commandIDs(mustClaim(t, s, "d", base)[:1]), base))
	update(t, s, func(tx store.Tx) error {
		ok(t, "AcknowledgeCommand", tx.AcknowledgeCommand(inTx.ID, base.Add(time.Minute), ""))
		wantErr(t, "AcknowledgeCommand twice", tx.AcknowledgeCommand(inTx.ID, base, ""), store.ErrLeaseLost)
		wantErr(t, "AcknowledgeCommand of an unknown id", tx.AcknowledgeCommand(randomCommandID(r), base, ""), store.ErrNotFound)
		return tx.AcknowledgeCommand(pendingOne.ID, base, "refused")
	})
	if got := getCommand(t, s, inTx.ID); got.State != store.CommandSent || !got.AckedAt.Equal(base.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("acknowledged in a transaction: %+v", got)
	}
	if got := getCommand(t, s, pendingOne.ID); got.State != store.CommandFailed {
		t.Fatalf("refused while pending in a transaction: %+v", got)
	}
}
