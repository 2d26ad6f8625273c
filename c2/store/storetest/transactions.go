package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

func testSettings(t *testing.T, s store.Store) {
	update(t, s, func(tx store.Tx) error {
		_, err := tx.GetSetting("c2.keypair")
		wantErr(t, "GetSetting of an unset name", err, store.ErrNotFound)
		ok(t, "PutSetting", tx.PutSetting("c2.keypair", []byte("first")))
		ok(t, "PutSetting empty", tx.PutSetting("empty", nil))
		return tx.PutSetting("c2.keypair", allBytes())
	})
	view(t, s, func(tx store.Tx) error {
		v, err := tx.GetSetting("c2.keypair")
		ok(t, "GetSetting", err)
		if !bytes.Equal(v, allBytes()) {
			t.Errorf("GetSetting after the overwrite = %x", v)
		}
		v, err = tx.GetSetting("empty")
		ok(t, "GetSetting of an empty value", err)
		if len(v) != 0 {
			t.Errorf("GetSetting of an empty value = %x", v)
		}
		_, err = tx.GetSetting("")
		wantFailure(t, "GetSetting with an empty name", err)
		return nil
	})
}

func testBlobsRoundTrip(t *testing.T, s store.Store) {
	r := newRand(t)
	blob := allBytes()
	c := store.Client{ID: randomID(r), SealedKey: blob, PublicKey: blob[100:], CreatedAt: base}
	tp := newTopic("blob", 3)
	tp.SealedKey = blob
	cmd := newCommand(r, c.ID, "SetTopicKey", "blob")
	cmd.SealedPayload = blob
	// An id of every byte value shows ids are not treated as text.
	var id e4.ID
	for i := range id {
		id[i] = byte(255 - i*17)
	}
	id[3] = 0
	odd := store.Client{ID: id, PublicKey: []byte{0}, CreatedAt: base}
	update(t, s, func(tx store.Tx) error {
		ok(t, "InsertClient", tx.InsertClient(c))
		ok(t, "InsertClient", tx.InsertClient(odd))
		ok(t, "InsertTopic", tx.InsertTopic(tp))
		return tx.EnqueueCommands([]store.Command{cmd})
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetClient(c.ID)
		ok(t, "GetClient", err)
		sameClient(t, got, c)
		got, err = tx.GetClient(odd.ID)
		ok(t, "GetClient", err)
		sameClient(t, got, odd)
		gotTopic, err := tx.GetTopic(tp.Name)
		ok(t, "GetTopic", err)
		sameTopic(t, gotTopic, tp)
		gotCmd, err := tx.GetCommand(cmd.ID)
		ok(t, "GetCommand", err)
		if !bytes.Equal(gotCmd.SealedPayload, blob) {
			t.Errorf("payload came back as %x", gotCmd.SealedPayload)
		}
		return nil
	})
}

func testTimesRoundTrip(t *testing.T, s store.Store) {
	r := newRand(t)
	times := []time.Time{
		base,
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2106, 2, 7, 6, 28, 16, 1000, time.FixedZone("UTC-7", -7*3600)),
		time.Unix(0, 0),
		{}, // the zero time stays zero
	}
	cs := make([]store.Client, len(times))
	for i, at := range times {
		cs[i] = newClient(r, fmt.Sprint(i))
		cs[i].CreatedAt = at
	}
	update(t, s, func(tx store.Tx) error { return tx.InsertClients(cs) })
	view(t, s, func(tx store.Tx) error {
		for i, c := range cs {
			got, err := tx.GetClient(c.ID)
			ok(t, "GetClient", err)
			want := times[i].UTC().Truncate(time.Microsecond)
			if !got.CreatedAt.Equal(want) || got.CreatedAt.Location() != time.UTC || got.CreatedAt.IsZero() != times[i].IsZero() {
				t.Errorf("time %v came back as %v, want %v in UTC", times[i], got.CreatedAt, want)
			}
		}
		return nil
	})
}

// errAbort is what the test functions return to abort an Update.
var errAbort = errors.New("abort")

// writeEverything writes one of each kind of row.
func writeEverything(tx store.Tx, c store.Client, cmd store.Command) error {
	return errors.Join(
		tx.InsertClient(c),
		tx.InsertTopic(newTopic("rolled-back", 1)),
		tx.AddMember(c.ID, "rolled-back"),
		tx.PutSetting("rolled-back", []byte("x")),
		tx.EnqueueCommands([]store.Command{cmd}),
	)
}

// wantNothingWritten checks that no row of writeEverything is there.
func wantNothingWritten(t testing.TB, s store.Store, c store.Client, cmd store.Command) {
	t.Helper()
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetClient(c.ID)
		wantErr(t, "GetClient after the rollback", err, store.ErrNotFound)
		_, err = tx.GetTopic("rolled-back")
		wantErr(t, "GetTopic after the rollback", err, store.ErrNotFound)
		_, err = tx.GetSetting("rolled-back")
		wantErr(t, "GetSetting after the rollback", err, store.ErrNotFound)
		_, err = tx.GetCommand(cmd.ID)
		wantErr(t, "GetCommand after the rollback", err, store.ErrNotFound)
		wantCount(t, "CountClients after the rollback", 0)(tx.CountClients())
		wantCount(t, "CountTopics after the rollback", 0)(tx.CountTopics())
		wantCount(t, "CountCommands after the rollback", 0)(tx.CountCommands(store.CommandFilter{}))
		return nil
	})
}

func testUpdateRollsBack(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newClient(r, "rolled back")
	cmd := newCommand(r, c.ID, "SetTopicKey", "rolled-back")
	err := s.Update(t.Context(), func(tx store.Tx) error {
		if err := writeEverything(tx, c, cmd); err != nil {
			return err
		}
		return errAbort
	})
	wantErr(t, "Update whose function fails", err, errAbort)
	wantNothingWritten(t, s, c, cmd)
}

func testUpdateRollsBackOnPanic(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newClient(r, "panicked")
	cmd := newCommand(r, c.ID, "SetTopicKey", "rolled-back")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic did not reach the caller of Update")
			}
		}()
		_ = s.Update(t.Context(), func(tx store.Tx) error {
			if err := writeEverything(tx, c, cmd); err != nil {
				return err
			}
			panic("in the middle of a transaction")
		})
	}()
	wantNothingWritten(t, s, c, cmd)
	// The store still works: the transaction did not keep the connection.
	update(t, s, func(tx store.Tx) error { return tx.InsertClient(c) })
}

func testTxAfterEnd(t *testing.T, s store.Store) {
	r := newRand(t)
	var kept store.Tx
	update(t, s, func(tx store.Tx) error {
		kept = tx
		return nil
	})
	if err := kept.InsertClient(newClient(r, "late")); err == nil {
		t.Fatal("InsertClient on a finished transaction succeeded")
	}
	if _, err := kept.CountClients(); err == nil {
		t.Fatal("CountClients on a finished transaction succeeded")
	}
}

func testViewSeesCommitted(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newClient(r, "seen")
	update(t, s, func(tx store.Tx) error { return tx.InsertClient(c) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetClient(c.ID)
		ok(t, "GetClient in a View after the commit", err)
		return nil
	})
	err := s.View(t.Context(), func(tx store.Tx) error { return errAbort })
	wantErr(t, "View returns its function's error", err, errAbort)
}

func testBadArguments(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 1)
	insertTopics(t, s, "t")
	view(t, s, func(tx store.Tx) error {
		_, err := tx.TopicsOfClient(ids[0], "", 0)
		wantFailure(t, "TopicsOfClient with limit 0", err)
		_, err = tx.ClientsOfTopic("t", e4.ID{}, 0)
		wantFailure(t, "ClientsOfTopic with limit 0", err)
		_, err = tx.LinkTargets(ids[0], e4.ID{}, -5)
		wantFailure(t, "LinkTargets with a negative limit", err)
		_, err = tx.ListCommands(store.CommandFilter{}, 0, 0)
		wantFailure(t, "ListCommands with limit 0", err)
		_, err = tx.ListCommands(store.CommandFilter{State: "lost"}, 0, 10)
		wantFailure(t, "ListCommands with an unknown state", err)
		_, err = tx.CountCommands(store.CommandFilter{Target: "\xff"})
		wantFailure(t, "CountCommands with a target that is not UTF-8", err)
		_, err = tx.IsMember(ids[0], "")
		wantFailure(t, "IsMember of an empty topic name", err)
		// The transaction is still usable after refused arguments.
		_, err = tx.GetClient(ids[0])
		ok(t, "GetClient after refused arguments", err)
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		wantFailure(t, "PutSetting with a NUL in the name", tx.PutSetting("a\x00", nil))
		bad := newCommand(r, ids[0], "Kind\xff", "t")
		wantFailure(t, "EnqueueCommands with a kind that is not UTF-8", tx.EnqueueCommands([]store.Command{bad}))
		return nil
	})
}

// testConcurrentUpdates runs Updates from several goroutines at once: none
// fails (a backend waits or retries), and the counter sees every insert.
func testConcurrentUpdates(t *testing.T, s store.Store) {
	const workers, each = 6, 25
	r := newRand(t)
	clients := make([][]store.Client, workers)
	for w := range clients {
		for i := range each {
			clients[w] = append(clients[w], newClient(r, fmt.Sprintf("w%d-%d", w, i)))
		}
	}
	insertTopics(t, s, "shared")
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for _, c := range clients[w] {
				errs <- s.Update(t.Context(), func(tx store.Tx) error {
					if err := tx.InsertClient(c); err != nil {
						return err
					}
					return tx.AddMember(c.ID, "shared")
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		ok(t, "concurrent Update", err)
	}
	view(t, s, func(tx store.Tx) error {
		wantCount(t, "CountClients", workers*each)(tx.CountClients())
		wantCount(t, "CountClientsOfTopic", workers*each)(tx.CountClientsOfTopic("shared"))
		return nil
	})
}

func testPing(t *testing.T, s store.Store) {
	ok(t, "Ping", s.Ping(t.Context()))
}
