// Package storetest is the conformance suite every C2 store backend runs,
// and benchmark helpers for them.
//
// A backend's test calls Run with a function that opens a fresh, empty
// store for one test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c2.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// Opener opens a fresh, empty store for one test. Run closes it when the
// test ends.
type Opener func(t *testing.T) store.Store

// Run runs every conformance test, each on a fresh store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ClientLifecycle", testClientLifecycle},
		{"ClientValidation", testClientValidation},
		{"InsertClientsBatch", testInsertClientsBatch},
		{"InsertClientsAllOrNothing", testInsertClientsAllOrNothing},
		{"ClientPagination", testClientPagination},
		{"TopicLifecycle", testTopicLifecycle},
		{"TopicPagination", testTopicPagination},
		{"TopicValidation", testTopicValidation},
		{"PreviousTopicKey", testPreviousTopicKey},
		{"Memberships", testMemberships},
		{"MembershipPagination", testMembershipPagination},
		{"RemoveAllMemberships", testRemoveAllMemberships},
		{"Links", testLinks},
		{"DeleteClientCascades", testDeleteClientCascades},
		{"DeleteTopicCascades", testDeleteTopicCascades},
		{"Settings", testSettings},
		{"BlobsRoundTrip", testBlobsRoundTrip},
		{"TimesRoundTrip", testTimesRoundTrip},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"UpdateRollsBackOnPanic", testUpdateRollsBackOnPanic},
		{"TxAfterEnd", testTxAfterEnd},
		{"ViewSeesCommitted", testViewSeesCommitted},
		{"BadArguments", testBadArguments},
		{"Enqueue", testEnqueue},
		{"EnqueueAllOrNothing", testEnqueueAllOrNothing},
		{"ListAndCountCommands", testListAndCountCommands},
		{"UpdateCommandPayload", testUpdateCommandPayload},
		{"ClaimPerClientOrder", testClaimPerClientOrder},
		{"ClaimAfterFail", testClaimAfterFail},
		{"ClaimNextAttempt", testClaimNextAttempt},
		{"ClaimLimitAndOrder", testClaimLimitAndOrder},
		{"ClaimArguments", testClaimArguments},
		{"Leases", testLeases},
		{"MarkSentReportsOthers", testMarkSentReportsOthers},
		{"Retry", testRetry},
		{"Fail", testFail},
		{"Acknowledge", testAcknowledge},
		{"AcknowledgeSent", testAcknowledgeSent},
		{"DeviceStateRoundTrip", testDeviceStateRoundTrip},
		{"TopicAcks", testTopicAcks},
		{"ItemsToRepair", testItemsToRepair},
		{"Supersede", testSupersede},
		{"ReserveTimestamps", testReserveTimestamps},
		{"Postpone", testPostpone},
		{"KeyChangesAndLinkSources", testKeyChangesAndLinkSources},
		{"ConcurrentClaimers", testConcurrentClaimers},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Ping", testPing},
		{"TokenLifecycle", testTokenLifecycle},
		{"TokenValidation", testTokenValidation},
		{"TokenPagination", testTokenPagination},
		{"AuditLog", testAuditLog},
		{"AuditOddText", testAuditOddText},
		{"AuditRollsBack", testAuditRollsBack},
		{"PolicyLifecycle", testPolicyLifecycle},
		{"ScheduleRows", testScheduleRows},
		{"MergeEvent", testMergeEvent},
		{"ClaimDue", testClaimDue},
		{"ConcurrentClaimDue", testConcurrentClaimDue},
		{"RotationRecords", testRotationRecords},
		{"ClientKeyTime", testClientKeyTime},
		{"C2KeyCounts", testC2KeyCounts},
		{"IdleClients", testIdleClients},
		{"TopicMessages", testTopicMessages},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// base is the time the tests start from; not UTC and not a whole
// microsecond, so that the round trip to UTC microseconds shows.
var base = time.Date(2031, 5, 17, 9, 30, 0, 123456789, time.FixedZone("UTC+2", 2*3600))

func update(t testing.TB, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t testing.TB, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// wantErr fails unless err is (or wraps) want.
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// wantFailure fails unless err is a plain error (not one of the store's
// sentinel errors).
func wantFailure(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, e := range []error{store.ErrNotFound, store.ErrExists, store.ErrLeaseLost} {
		if errors.Is(err, e) {
			t.Fatalf("%s: got %v, want a validation error", what, err)
		}
	}
}

func ok(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// newRand returns a generator seeded from the test name, so that a failure
// repeats.
func newRand(t testing.TB) *rand.Rand {
	var seed [32]byte
	copy(seed[:], t.Name())
	return rand.New(rand.NewChaCha8(seed))
}

func randomID(r *rand.Rand) e4.ID {
	var id e4.ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

func randomCommandID(r *rand.Rand) store.CommandID {
	return store.CommandID(randomID(r))
}

// allBytes is every byte value, twice, in an order that is not sorted.
func allBytes() []byte {
	b := make([]byte, 512)
	for i := range 256 {
		b[i] = byte(i)
		b[511-i] = byte(i * 7)
	}
	return b
}

// newClient makes a client with distinct key bytes.
func newClient(r *rand.Rand, name string) store.Client {
	key := make([]byte, 60)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	return store.Client{ID: randomID(r), Name: name, SealedKey: key, CreatedAt: base}
}

// insertClients inserts n random clients and returns their ids sorted.
func insertClients(t testing.TB, s store.Store, r *rand.Rand, n int) []e4.ID {
	t.Helper()
	cs := make([]store.Client, n)
	ids := make([]e4.ID, n)
	for i := range cs {
		cs[i] = newClient(r, "")
		ids[i] = cs[i].ID
	}
	update(t, s, func(tx store.Tx) error { return tx.InsertClients(cs) })
	slices.SortFunc(ids, func(a, b e4.ID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

func newTopic(name string, version uint64) store.Topic {
	return store.Topic{
		Name: name, Hash: e4.HashTopic(name), SealedKey: []byte("sealed:" + name),
		KeyVersion: version, CreatedAt: base, RotatedAt: base.Add(time.Hour),
	}
}

func insertTopics(t testing.TB, s store.Store, names ...string) {
	t.Helper()
	update(t, s, func(tx store.Tx) error {
		for _, n := range names {
			if err := tx.InsertTopic(newTopic(n, 1)); err != nil {
				return err
			}
		}
		return nil
	})
}

func addMembers(t testing.TB, s store.Store, topic string, ids ...e4.ID) {
	t.Helper()
	update(t, s, func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.AddMember(id, topic); err != nil {
				return err
			}
		}
		return nil
	})
}
