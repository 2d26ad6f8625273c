package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

const lease = time.Minute

// newCommand makes an outbox entry due at base.
func newCommand(r *rand.Rand, client e4.ID, kind, target string) store.Command {
	return store.Command{
		ID: randomCommandID(r), ClientID: client, Kind: kind, Target: target,
		SealedPayload: []byte("sealed " + kind + " " + target), NextAttemptAt: base, CreatedAt: base,
	}
}

func enqueue(t testing.TB, s store.Store, cmds ...store.Command) {
	t.Helper()
	update(t, s, func(tx store.Tx) error { return tx.EnqueueCommands(cmds) })
}

func getCommand(t testing.TB, s store.Store, id store.CommandID) store.Command {
	t.Helper()
	var c store.Command
	view(t, s, func(tx store.Tx) error {
		var err error
		c, err = tx.GetCommand(id)
		return err
	})
	return c
}

// claim claims at base+at and returns the ids claimed, in order.
func claim(t testing.TB, s store.Store, owner string, at time.Duration, limit int) []store.CommandID {
	t.Helper()
	cmds, err := s.ClaimCommands(context.Background(), owner, base.Add(at), lease, limit)
	ok(t, "ClaimCommands", err)
	return commandIDs(cmds)
}

func commandIDs(cmds []store.Command) []store.CommandID {
	ids := make([]store.CommandID, len(cmds))
	for i, c := range cmds {
		ids[i] = c.ID
	}
	return ids
}

func wantIDs(t testing.TB, what string, got []store.CommandID, want ...store.CommandID) {
	t.Helper()
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("%s: got %d commands %x, want %d %x", what, len(got), got, len(want), want)
	}
}

func testEnqueue(t *testing.T, s store.Store) {
	r := newRand(t)
	client := randomID(r) // the outbox does not need the client to exist
	cmds := make([]store.Command, 300)
	for i := range cmds {
		cmds[i] = newCommand(r, client, "SetTopicKey", fmt.Sprint("topic-", i))
		cmds[i].CreatedAt = base.Add(time.Duration(i) * time.Microsecond)
	}
	enqueue(t, s, cmds...)
	var last int64
	for i, want := range cmds {
		got := getCommand(t, s, want.ID)
		if got.Seq <= last {
			t.Fatalf("command %d has seq %d after %d: seqs do not follow slice order", i, got.Seq, last)
		}
		last = got.Seq
		if got.ClientID != client || got.Kind != want.Kind || got.Target != want.Target ||
			!bytes.Equal(got.SealedPayload, want.SealedPayload) || got.State != store.CommandPending ||
			got.Attempts != 0 || got.LastError != "" || !got.SentAt.IsZero() ||
			!got.NextAttemptAt.Equal(want.NextAttemptAt.Truncate(time.Microsecond)) ||
			!got.CreatedAt.Equal(want.CreatedAt.Truncate(time.Microsecond)) {
			t.Fatalf("command %d came back as %+v, want %+v pending", i, got, want)
		}
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetCommand(randomCommandID(r))
		wantErr(t, "GetCommand of an unknown id", err, store.ErrNotFound)
		return tx.EnqueueCommands(nil)
	})
}

func testEnqueueAllOrNothing(t *testing.T, s store.Store) {
	r := newRand(t)
	client := randomID(r)
	first := newCommand(r, client, "SetTopicKey", "a")
	enqueue(t, s, first)
	batch := []store.Command{newCommand(r, client, "SetTopicKey", "b"), first}
	twice := newCommand(r, client, "SetTopicKey", "c")
	after := newCommand(r, client, "SetTopicKey", "d")
	update(t, s, func(tx store.Tx) error {
		wantErr(t, "EnqueueCommands with an id already there", tx.EnqueueCommands(batch), store.ErrExists)
		wantErr(t, "EnqueueCommands with an id twice", tx.EnqueueCommands([]store.Command{twice, twice}), store.ErrExists)
		return tx.EnqueueCommands([]store.Command{after})
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetCommand(batch[0].ID)
		wantErr(t, "GetCommand of a refused batch's command", err, store.ErrNotFound)
		_, err = tx.GetCommand(twice.ID)
		wantErr(t, "GetCommand of a refused batch's command", err, store.ErrNotFound)
		wantCount(t, "CountCommands", 2)(tx.CountCommands(store.CommandFilter{}))
		return nil
	})
}

func testListAndCountCommands(t *testing.T, s store.Store) {
	r := newRand(t)
	a, b := randomID(r), randomID(r)
	var cmds []store.Command
	for i := range 40 {
		client, target := a, "t1"
		if i%3 == 0 {
			client = b
		}
		if i%4 == 0 {
			target = "t2"
		}
		cmds = append(cmds, newCommand(r, client, "SetTopicKey", target))
	}
	enqueue(t, s, cmds...)
	// Settle a's oldest command as sent and b's as failed.
	claimed := claim(t, s, "d", 0, 10)
	wantIDs(t, "first claim", claimed, cmds[0].ID, cmds[1].ID)
	ok(t, "Fail", s.Fail(t.Context(), "d", cmds[0].ID, "gone"))
	ok(t, "MarkSent", s.MarkSent(t.Context(), "d", []store.CommandID{cmds[1].ID}, base))
	states := map[store.CommandID]store.CommandState{cmds[0].ID: store.CommandFailed, cmds[1].ID: store.CommandSent}

	filters := []store.CommandFilter{
		{}, {ClientID: &a}, {ClientID: &b}, {State: store.CommandPending}, {State: store.CommandSent},
		{State: store.CommandFailed}, {Target: "t2"}, {Target: "none"}, {ClientID: &b, Target: "t2"},
		{ClientID: &a, State: store.CommandPending, Target: "t1"},
	}
	for _, f := range filters {
		var want []store.CommandID
		for _, c := range cmds {
			state := states[c.ID]
			if state == "" {
				state = store.CommandPending
			}
			if (f.ClientID == nil || *f.ClientID == c.ClientID) && (f.State == "" || f.State == state) &&
				(f.Target == "" || f.Target == c.Target) {
				want = append(want, c.ID)
			}
		}
		view(t, s, func(tx store.Tx) error {
			wantCount(t, fmt.Sprintf("CountCommands(%+v)", f), int64(len(want)))(tx.CountCommands(f))
			var got []store.CommandID
			var after int64
			for range 100 {
				page, err := tx.ListCommands(f, after, 3)
				ok(t, "ListCommands", err)
				for _, c := range page {
					if c.Seq <= after {
						t.Fatalf("ListCommands: seq %d after %d", c.Seq, after)
					}
					after = c.Seq
					got = append(got, c.ID)
				}
				if len(page) < 3 {
					break
				}
			}
			wantIDs(t, fmt.Sprintf("ListCommands(%+v) pages", f), got, want...)
			return nil
		})
	}
}

func testClaimPerClientOrder(t *testing.T, s store.Store) {
	r := newRand(t)
	a, b := randomID(r), randomID(r)
	a1, a2, b1, a3 := newCommand(r, a, "k", "1"), newCommand(r, a, "k", "2"), newCommand(r, b, "k", "1"), newCommand(r, a, "k", "3")
	enqueue(t, s, a1, a2, b1, a3)
	wantIDs(t, "first claim", claim(t, s, "d1", 0, 10), a1.ID, b1.ID)
	wantIDs(t, "claim while a's first command is out", claim(t, s, "d2", 0, 10))
	ok(t, "MarkSent", s.MarkSent(t.Context(), "d1", []store.CommandID{a1.ID}, base))
	wantIDs(t, "claim after a1 was sent", claim(t, s, "d2", 0, 10), a2.ID)
	ok(t, "MarkSent", s.MarkSent(t.Context(), "d1", []store.CommandID{b1.ID}, base))
	wantIDs(t, "claim while a2 is out", claim(t, s, "d1", 0, 10))
	// A retried head still blocks the commands behind it.
	ok(t, "Retry", s.Retry(t.Context(), "d2", a2.ID, base.Add(time.Hour), "broker down"))
	wantIDs(t, "claim before a2's next attempt", claim(t, s, "d1", time.Minute, 10))
	wantIDs(t, "claim at a2's next attempt", claim(t, s, "d1", time.Hour, 10), a2.ID)
	ok(t, "MarkSent", s.MarkSent(t.Context(), "d1", []store.CommandID{a2.ID}, base))
	wantIDs(t, "claim after a2 was sent", claim(t, s, "d1", time.Hour, 10), a3.ID)
}

func testClaimAfterFail(t *testing.T, s store.Store) {
	r := newRand(t)
	a := randomID(r)
	a1, a2 := newCommand(r, a, "k", "1"), newCommand(r, a, "k", "2")
	enqueue(t, s, a1, a2)
	wantIDs(t, "first claim", claim(t, s, "d", 0, 10), a1.ID)
	ok(t, "Fail", s.Fail(t.Context(), "d", a1.ID, "payload cannot be opened"))
	wantIDs(t, "claim after the failure", claim(t, s, "d", 0, 10), a2.ID)
}

func testClaimNextAttempt(t *testing.T, s store.Store) {
	r := newRand(t)
	later := newCommand(r, randomID(r), "k", "later")
	later.NextAttemptAt = base.Add(10 * time.Minute)
	now := newCommand(r, randomID(r), "k", "now")
	enqueue(t, s, later, now)
	wantIDs(t, "claim before the first is due", claim(t, s, "d", 0, 10), now.ID)
	ok(t, "MarkSent", s.MarkSent(t.Context(), "d", []store.CommandID{now.ID}, base))
	wantIDs(t, "claim a microsecond early", claim(t, s, "d", 10*time.Minute-time.Microsecond, 10))
	wantIDs(t, "claim when due", claim(t, s, "d", 10*time.Minute, 10), later.ID)
}

func testClaimLimitAndOrder(t *testing.T, s store.Store) {
	r := newRand(t)
	cmds := make([]store.Command, 10)
	for i := range cmds {
		cmds[i] = newCommand(r, randomID(r), "k", fmt.Sprint(i))
	}
	enqueue(t, s, cmds...)
	claimed, err := s.ClaimCommands(t.Context(), "d", base, lease, 3)
	ok(t, "ClaimCommands", err)
	wantIDs(t, "claim of 3", commandIDs(claimed), cmds[0].ID, cmds[1].ID, cmds[2].ID)
	for i, c := range claimed {
		if c.State != store.CommandPending || !bytes.Equal(c.SealedPayload, cmds[i].SealedPayload) || c.Kind != "k" {
			t.Errorf("claimed command %+v does not match what was enqueued", c)
		}
		if i > 0 && c.Seq <= claimed[i-1].Seq {
			t.Errorf("claimed commands not in seq order")
		}
	}
	wantIDs(t, "next claim", claim(t, s, "d", 0, 100), commandIDs(cmds[3:])...)
}

func testClaimArguments(t *testing.T, s store.Store) {
	_, err := s.ClaimCommands(t.Context(), "", base, lease, 10)
	wantFailure(t, "ClaimCommands without an owner", err)
	_, err = s.ClaimCommands(t.Context(), "d", base, 0, 10)
	wantFailure(t, "ClaimCommands with no lease", err)
	_, err = s.ClaimCommands(t.Context(), "d", base, lease, 0)
	wantFailure(t, "ClaimCommands with limit 0", err)
	wantFailure(t, "MarkSent without an owner", s.MarkSent(t.Context(), "", []store.CommandID{{1}}, base))
	ok(t, "MarkSent of no command", s.MarkSent(t.Context(), "d", nil, base))
}

func testLeases(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newCommand(r, randomID(r), "k", "t")
	enqueue(t, s, c)
	wantIDs(t, "first claim", claim(t, s, "old", 0, 10), c.ID)
	wantIDs(t, "claim during the lease", claim(t, s, "new", lease-time.Microsecond, 10))
	wantIDs(t, "claim when the lease expires", claim(t, s, "new", lease, 10), c.ID)

	ctx := t.Context()
	wantErr(t, "MarkSent by the old owner", s.MarkSent(ctx, "old", []store.CommandID{c.ID}, base), store.ErrLeaseLost)
	wantErr(t, "Retry by the old owner", s.Retry(ctx, "old", c.ID, base, "x"), store.ErrLeaseLost)
	wantErr(t, "Fail by the old owner", s.Fail(ctx, "old", c.ID, "x"), store.ErrLeaseLost)
	if got := getCommand(t, s, c.ID); got.State != store.CommandPending || got.Attempts != 0 {
		t.Fatalf("the old owner changed the command: %+v", got)
	}
	sentAt := base.Add(lease + time.Second)
	ok(t, "MarkSent by the new owner", s.MarkSent(ctx, "new", []store.CommandID{c.ID}, sentAt))
	got := getCommand(t, s, c.ID)
	if got.State != store.CommandSent || !got.SentAt.Equal(sentAt.Truncate(time.Microsecond)) {
		t.Fatalf("after MarkSent: state %s sent at %v, want sent at %v", got.State, got.SentAt, sentAt)
	}
	wantErr(t, "MarkSent twice", s.MarkSent(ctx, "new", []store.CommandID{c.ID}, sentAt), store.ErrLeaseLost)
	wantIDs(t, "claim of a sent command", claim(t, s, "other", 10*lease, 10))
	unknown := randomCommandID(r)
	wantErr(t, "MarkSent of an unknown id", s.MarkSent(ctx, "new", []store.CommandID{unknown}, base), store.ErrNotFound)
	wantErr(t, "Retry of an unknown id", s.Retry(ctx, "new", unknown, base, "x"), store.ErrNotFound)
	wantErr(t, "Fail of an unknown id", s.Fail(ctx, "new", unknown, "x"), store.ErrNotFound)

	// An owner whose lease expired can still settle while nobody else
	// took the command.
	late := newCommand(r, randomID(r), "k", "late")
	enqueue(t, s, late)
	wantIDs(t, "claim", claim(t, s, "slow", 0, 10), late.ID)
	ok(t, "MarkSent after the lease, not taken over", s.MarkSent(ctx, "slow", []store.CommandID{late.ID}, base.Add(5*lease)))
}

func testMarkSentReportsOthers(t *testing.T, s store.Store) {
	r := newRand(t)
	var cmds []store.Command
	for i := range 600 { // more than one IN list
		cmds = append(cmds, newCommand(r, randomID(r), "k", fmt.Sprint(i)))
	}
	enqueue(t, s, cmds...)
	mine := claim(t, s, "me", 0, 598)
	theirs := claim(t, s, "them", 0, 10)
	if len(mine) != 598 || len(theirs) != 2 {
		t.Fatalf("claimed %d and %d, want 598 and 2", len(mine), len(theirs))
	}
	unknown := randomCommandID(r)
	ids := append(append(slices.Clone(mine), theirs...), unknown, mine[0])
	err := s.MarkSent(t.Context(), "me", ids, base)
	wantErr(t, "MarkSent with others' commands", err, store.ErrLeaseLost)
	wantErr(t, "MarkSent with an unknown command", err, store.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		wantCount(t, "sent", 598)(tx.CountCommands(store.CommandFilter{State: store.CommandSent}))
		wantCount(t, "pending", 2)(tx.CountCommands(store.CommandFilter{State: store.CommandPending}))
		return nil
	})
	ok(t, "MarkSent by the other owner", s.MarkSent(t.Context(), "them", theirs, base))
}

func testRetry(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newCommand(r, randomID(r), "k", "t")
	enqueue(t, s, c)
	ctx := t.Context()
	for attempt := 1; attempt <= 3; attempt++ {
		now := time.Duration(attempt-1) * time.Hour
		wantIDs(t, "claim", claim(t, s, "d", now, 10), c.ID)
		next := base.Add(now + 30*time.Minute)
		reason := fmt.Sprintf("attempt %d: broker said no \xff", attempt)
		ok(t, "Retry", s.Retry(ctx, "d", c.ID, next, reason))
		got := getCommand(t, s, c.ID)
		if got.Attempts != attempt || got.State != store.CommandPending || !got.NextAttemptAt.Equal(next.Truncate(time.Microsecond)) ||
			got.LastError != fmt.Sprintf("attempt %d: broker said no \uFFFD", attempt) {
			t.Fatalf("after retry %d: %+v", attempt, got)
		}
		wantIDs(t, "claim before the next attempt", claim(t, s, "d", now+30*time.Minute-time.Microsecond, 10))
		wantErr(t, "Retry of a released command", s.Retry(ctx, "d", c.ID, next, "x"), store.ErrLeaseLost)
	}
	wantIDs(t, "claim at the next attempt", claim(t, s, "d", 2*time.Hour+30*time.Minute, 10), c.ID)
	ok(t, "MarkSent after retries", s.MarkSent(ctx, "d", []store.CommandID{c.ID}, base))
	if got := getCommand(t, s, c.ID); got.State != store.CommandSent || got.Attempts != 3 || got.LastError == "" {
		t.Fatalf("after MarkSent: %+v, want sent with 3 attempts and the last error kept", got)
	}
}

func testFail(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newCommand(r, randomID(r), "k", "t")
	enqueue(t, s, c)
	wantIDs(t, "claim", claim(t, s, "d", 0, 10), c.ID)
	ok(t, "Fail", s.Fail(t.Context(), "d", c.ID, "client key unknown"))
	got := getCommand(t, s, c.ID)
	if got.State != store.CommandFailed || got.LastError != "client key unknown" || !got.SentAt.IsZero() {
		t.Fatalf("after Fail: %+v", got)
	}
	wantIDs(t, "claim of a failed command", claim(t, s, "d", 10*lease, 10))
	wantErr(t, "Fail twice", s.Fail(t.Context(), "d", c.ID, "again"), store.ErrLeaseLost)
}

// Acknowledger is implemented by stores that settle a command on its
// device's acknowledgement (the C2 service looks for it).
type Acknowledger interface {
	Acknowledge(ctx context.Context, id store.CommandID, at time.Time, refusal string) error
}

func testAcknowledge(t *testing.T, s store.Store) {
	a, isAck := s.(Acknowledger)
	if !isAck {
		t.Fatalf("%T does not implement Acknowledge, which the C2 service needs", s)
	}
	r := newRand(t)
	client := randomID(r)
	acked, refused, next := newCommand(r, client, "k", "1"), newCommand(r, client, "k", "2"), newCommand(r, client, "k", "3")
	enqueue(t, s, acked, refused, next)
	ctx := t.Context()
	// Sent, then waiting for the device with its lease released.
	wantIDs(t, "claim", claim(t, s, "d", 0, 10), acked.ID)
	ok(t, "Retry while awaiting the acknowledgement", s.Retry(ctx, "d", acked.ID, base.Add(time.Hour), "awaiting"))
	ackAt := base.Add(time.Second)
	ok(t, "Acknowledge", a.Acknowledge(ctx, acked.ID, ackAt, ""))
	if got := getCommand(t, s, acked.ID); got.State != store.CommandSent || !got.SentAt.Equal(ackAt.Truncate(time.Microsecond)) {
		t.Fatalf("after Acknowledge: %+v", got)
	}
	wantErr(t, "Acknowledge twice", a.Acknowledge(ctx, acked.ID, ackAt, ""), store.ErrLeaseLost)
	// A refusal arriving while another dispatcher holds a resend.
	wantIDs(t, "claim of the next command", claim(t, s, "other", 0, 10), refused.ID)
	ok(t, "Acknowledge a refusal", a.Acknowledge(ctx, refused.ID, ackAt, "refused \x00by the device"))
	if got := getCommand(t, s, refused.ID); got.State != store.CommandFailed || got.LastError != "refused by the device" {
		t.Fatalf("after a refusal: %+v", got)
	}
	wantErr(t, "MarkSent after the refusal", s.MarkSent(ctx, "other", []store.CommandID{refused.ID}, base), store.ErrLeaseLost)
	wantIDs(t, "claim after the refusal", claim(t, s, "d", 0, 10), next.ID)
	wantErr(t, "Acknowledge of an unknown id", a.Acknowledge(ctx, randomCommandID(r), ackAt, ""), store.ErrNotFound)
}

// testConcurrentClaimers runs dispatchers in goroutines until every
// command is sent: none is claimed twice, all are claimed, and each
// client's commands are claimed in seq order.
func testConcurrentClaimers(t *testing.T, s store.Store) {
	cmds := ReplicaCommands(60, 5)
	enqueue(t, s, cmds...)
	CheckDispatchOrder(t, cmds, ConcurrentDispatch(t, s, 4, len(cmds), 7))
}

// ReplicaCommands makes perClient commands for each of clients clients,
// interleaved by client, due at once.
func ReplicaCommands(clients, perClient int) []store.Command {
	r := rand.New(rand.NewPCG(uint64(clients), uint64(perClient)))
	ids := make([]e4.ID, clients)
	for i := range ids {
		ids[i] = randomID(r)
	}
	var cmds []store.Command
	for round := range perClient {
		for _, id := range ids {
			cmds = append(cmds, newCommand(r, id, "k", fmt.Sprint(round)))
		}
	}
	return cmds
}

// CheckDispatchOrder fails unless claimed (in claim order) holds every
// command of cmds exactly once, and each client's in enqueue order.
func CheckDispatchOrder(t testing.TB, cmds, claimed []store.Command) {
	t.Helper()
	seen := make(map[store.CommandID]bool)
	perClient := make(map[e4.ID][]int64)
	for _, c := range claimed {
		if seen[c.ID] {
			t.Fatalf("command %x claimed twice", c.ID)
		}
		seen[c.ID] = true
		perClient[c.ClientID] = append(perClient[c.ClientID], c.Seq)
	}
	for _, c := range cmds {
		if !seen[c.ID] {
			t.Fatalf("command %x never claimed (%d of %d claimed)", c.ID, len(seen), len(cmds))
		}
	}
	if len(seen) != len(cmds) {
		t.Fatalf("%d commands claimed, %d enqueued", len(seen), len(cmds))
	}
	for id, seqs := range perClient {
		if !slices.IsSorted(seqs) {
			t.Fatalf("client %s: commands claimed in seq order %v", id, seqs)
		}
	}
}

// ConcurrentDispatch runs dispatchers goroutines, each with its own owner
// name, that claim up to batch commands and mark them sent, until total
// commands were claimed; it returns the commands in the order they were
// claimed. Each store may be a different instance on one database
// (replicas); dispatcher i uses stores[i%len(stores)].
func ConcurrentDispatch(t testing.TB, s store.Store, dispatchers, total, batch int, more ...store.Store) []store.Command {
	t.Helper()
	stores := append([]store.Store{s}, more...)
	var (
		mu      sync.Mutex
		claimed []store.Command
		wg      sync.WaitGroup
		errs    = make(chan error, dispatchers)
	)
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(claimed) >= total
	}
	for i := range dispatchers {
		st, owner := stores[i%len(stores)], fmt.Sprint("dispatcher-", i)
		wg.Go(func() {
			// Bounded: every round either claims or waits for another
			// dispatcher to settle the commands it holds.
			for round := 0; !done(); round++ {
				if round > 100*total {
					errs <- errors.New("dispatch does not finish")
					return
				}
				got, err := st.ClaimCommands(context.Background(), owner, base, time.Hour, batch)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				claimed = append(claimed, got...)
				mu.Unlock()
				if err := st.MarkSent(context.Background(), owner, commandIDs(got), base); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dispatcher: %v", err)
	}
	return claimed
}
