package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// RawExec runs a statement on the store's database directly, with $n
// parameters, bypassing the store's checks and the schema's CHECK and
// foreign-key constraints, to damage rows as a hand edit or a broken disk
// would.
type RawExec func(query string, args ...any) error

// CorruptOpener opens a fresh store and a RawExec on its database.
type CorruptOpener func(t *testing.T) (store.Store, RawExec)

// RunCorruption checks that damaged rows make the store return errors,
// never panic nor return a wrong value, and that it keeps working for the
// rows that are sound.
func RunCorruption(t *testing.T, open CorruptOpener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, raw RawExec)
	}{
		{"ClientID", testCorruptClientID},
		{"Topic", testCorruptTopic},
		{"Membership", testCorruptMembership},
		{"Counter", testCorruptCounter},
		{"Command", testCorruptCommand},
		{"ClaimLeavesNoLease", testCorruptClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, raw := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s, raw)
		})
	}
}

// wantBroken fails unless err is a plain error: not nil, and not one of
// the store's sentinel errors, which would tell the caller something
// false about the data.
func wantBroken(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error from a damaged row", what)
	}
	for _, e := range []error{store.ErrNotFound, store.ErrExists, store.ErrLeaseLost} {
		if errors.Is(err, e) {
			t.Fatalf("%s: %v, want an error about the damaged row", what, err)
		}
	}
}

func rawOK(t testing.TB, raw RawExec, query string, args ...any) {
	t.Helper()
	if err := raw(query, args...); err != nil {
		t.Fatalf("damaging the database with %q: %v", query, err)
	}
}

func testCorruptClientID(t *testing.T, s store.Store, raw RawExec) {
	r := newRand(t)
	ids := insertClients(t, s, r, 3)
	rawOK(t, raw, "UPDATE clients SET id = $1 WHERE id = $2", ids[1][:15], ids[1][:])
	err := s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.ListClients(e4.ID{}, 10)
		return err
	})
	wantBroken(t, "ListClients over a 15-byte id", err)
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetClient(ids[0])
		ok(t, "GetClient of a sound row", err)
		return nil
	})
}

func testCorruptTopic(t *testing.T, s store.Store, raw RawExec) {
	insertTopics(t, s, "short-hash", "negative", "sound")
	rawOK(t, raw, "UPDATE topics SET hash = $1 WHERE name = $2", []byte{1, 2, 3}, "short-hash")
	rawOK(t, raw, "UPDATE topics SET key_version = -1 WHERE name = $1", "negative")
	for _, name := range []string{"short-hash", "negative"} {
		err := s.View(t.Context(), func(tx store.Tx) error {
			_, err := tx.GetTopic(name)
			return err
		})
		wantBroken(t, "GetTopic of "+name, err)
	}
	err := s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.ListTopics("", 10)
		return err
	})
	wantBroken(t, "ListTopics", err)
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetTopic("sound")
		ok(t, "GetTopic of a sound row", err)
		return nil
	})
}

func testCorruptMembership(t *testing.T, s store.Store, raw RawExec) {
	r := newRand(t)
	ids := insertClients(t, s, r, 2)
	insertTopics(t, s, "t")
	addMembers(t, s, "t", ids...)
	rawOK(t, raw, "INSERT INTO memberships (client_id, topic) VALUES ($1, $2)", []byte{9, 9}, "t")
	rawOK(t, raw, "INSERT INTO links (source, target) VALUES ($1, $2)", ids[0][:], []byte{7})
	err := s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.ClientsOfTopic("t", e4.ID{}, 10)
		return err
	})
	wantBroken(t, "ClientsOfTopic over a 2-byte member id", err)
	err = s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.LinkTargets(ids[0], e4.ID{}, 10)
		return err
	})
	wantBroken(t, "LinkTargets over a 1-byte target", err)
}

func testCorruptCounter(t *testing.T, s store.Store, raw RawExec) {
	rawOK(t, raw, "UPDATE counters SET value = -5 WHERE name = 'clients'")
	rawOK(t, raw, "DELETE FROM counters WHERE name = 'topics'")
	err := s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.CountClients()
		return err
	})
	wantBroken(t, "CountClients of a negative counter", err)
	err = s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.CountTopics()
		return err
	})
	wantBroken(t, "CountTopics without its counter", err)
}

func testCorruptCommand(t *testing.T, s store.Store, raw RawExec) {
	r := newRand(t)
	client := randomID(r)
	lost, negative, short := newCommand(r, client, "k", "1"), newCommand(r, client, "k", "2"), newCommand(r, client, "k", "3")
	enqueue(t, s, lost, negative, short)
	rawOK(t, raw, "UPDATE outbox SET state = 'lost' WHERE id = $1", lost.ID[:])
	rawOK(t, raw, "UPDATE outbox SET attempts = -2 WHERE id = $1", negative.ID[:])
	rawOK(t, raw, "UPDATE outbox SET client_id = $1 WHERE id = $2", []byte("short"), short.ID[:])
	for _, c := range []store.Command{lost, negative, short} {
		err := s.View(t.Context(), func(tx store.Tx) error {
			_, err := tx.GetCommand(c.ID)
			return err
		})
		wantBroken(t, "GetCommand of "+c.Target, err)
	}
	err := s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.ListCommands(store.CommandFilter{}, 0, 10)
		return err
	})
	wantBroken(t, "ListCommands", err)
}

// testCorruptClaim: a damaged head makes ClaimCommands fail without
// leaving leases on the commands it picked; once the row is repaired they
// are claimable at once.
func testCorruptClaim(t *testing.T, s store.Store, raw RawExec) {
	r := newRand(t)
	first, damaged := newCommand(r, randomID(r), "k", "1"), newCommand(r, randomID(r), "k", "2")
	enqueue(t, s, first, damaged)
	rawOK(t, raw, "UPDATE outbox SET kind = 'k', payload = $1, client_id = $2 WHERE id = $3", []byte{}, []byte{1}, damaged.ID[:])
	_, err := s.ClaimCommands(context.Background(), "d", base, time.Hour, 10)
	wantBroken(t, "ClaimCommands over a damaged row", err)
	rawOK(t, raw, "UPDATE outbox SET state = 'failed' WHERE id = $1", damaged.ID[:])
	wantIDs(t, "claim after the repair, at the same time", claim(t, s, "other", 0, 10), first.ID)
}
