package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

func sameClient(t testing.TB, got, want store.Client) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name ||
		!bytes.Equal(got.SealedKey, want.SealedKey) || !bytes.Equal(got.PublicKey, want.PublicKey) ||
		!got.CreatedAt.Equal(want.CreatedAt.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("got client %+v, want %+v", got, want)
	}
}

func testClientLifecycle(t *testing.T, s store.Store) {
	r := newRand(t)
	c := newClient(r, "device-1")
	c.PublicKey = []byte("public key bytes, not secret")
	update(t, s, func(tx store.Tx) error { return tx.InsertClient(c) })
	err := s.Update(t.Context(), func(tx store.Tx) error { return tx.InsertClient(c) })
	wantErr(t, "inserting the same id again", err, store.ErrExists)

	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetClient(c.ID)
		ok(t, "GetClient", err)
		sameClient(t, got, c)
		_, err = tx.GetClient(randomID(r))
		wantErr(t, "GetClient of an unknown id", err, store.ErrNotFound)
		return nil
	})

	update(t, s, func(tx store.Tx) error {
		ok(t, "UpdateClientKey", tx.UpdateClientKey(c.ID, []byte("new sealed"), nil))
		wantErr(t, "UpdateClientKey of an unknown id", tx.UpdateClientKey(randomID(r), []byte("k"), nil), store.ErrNotFound)
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetClient(c.ID)
		ok(t, "GetClient", err)
		c.SealedKey, c.PublicKey = []byte("new sealed"), nil
		sameClient(t, got, c)
		return nil
	})

	update(t, s, func(tx store.Tx) error {
		ok(t, "DeleteClient", tx.DeleteClient(c.ID))
		wantErr(t, "DeleteClient twice", tx.DeleteClient(c.ID), store.ErrNotFound)
		n, err := tx.CountClients()
		ok(t, "CountClients", err)
		if n != 0 {
			t.Errorf("CountClients after the delete = %d, want 0", n)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetClient(c.ID)
		wantErr(t, "GetClient after the delete", err, store.ErrNotFound)
		return nil
	})
}

func testClientValidation(t *testing.T, s store.Store) {
	r := newRand(t)
	update(t, s, func(tx store.Tx) error {
		wantFailure(t, "InsertClient with the zero id", tx.InsertClient(store.Client{Name: "zero"}))
		bad := newClient(r, "bad\xffname")
		wantFailure(t, "InsertClient with a name that is not UTF-8", tx.InsertClient(bad))
		bad = newClient(r, "nul\x00name")
		wantFailure(t, "InsertClient with a NUL in the name", tx.InsertClients([]store.Client{newClient(r, ""), bad}))
		_, err := tx.ListClients(e4.ID{}, 0)
		wantFailure(t, "ListClients with limit 0", err)
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		n, err := tx.CountClients()
		ok(t, "CountClients", err)
		if n != 0 {
			t.Errorf("CountClients = %d after refused inserts, want 0", n)
		}
		return nil
	})
}

func testInsertClientsBatch(t *testing.T, s store.Store) {
	r := newRand(t)
	// 1000 rows exercise full batches and every smaller statement size.
	cs := make([]store.Client, 1000)
	for i := range cs {
		cs[i] = newClient(r, "")
	}
	cs[0].Name, cs[999].PublicKey = "first", []byte{1, 2, 3}
	update(t, s, func(tx store.Tx) error {
		ok(t, "InsertClients of none", tx.InsertClients(nil))
		return tx.InsertClients(cs)
	})
	view(t, s, func(tx store.Tx) error {
		n, err := tx.CountClients()
		ok(t, "CountClients", err)
		if n != int64(len(cs)) {
			t.Fatalf("CountClients = %d, want %d", n, len(cs))
		}
		byID := make(map[e4.ID]store.Client)
		for _, c := range cs {
			got, err := tx.GetClient(c.ID)
			ok(t, "GetClient", err)
			sameClient(t, got, c)
			byID[c.ID] = c
		}
		page, err := tx.ListClients(e4.ID{}, 50)
		ok(t, "ListClients", err)
		for _, got := range page {
			sameClient(t, got, byID[got.ID])
		}
		return nil
	})
}

func testInsertClientsAllOrNothing(t *testing.T, s store.Store) {
	r := newRand(t)
	existing := newClient(r, "existing")
	update(t, s, func(tx store.Tx) error { return tx.InsertClient(existing) })

	fresh := make([]store.Client, 300)
	for i := range fresh {
		fresh[i] = newClient(r, "")
	}
	withExisting := append(slices.Clone(fresh), existing)
	withTwice := append(slices.Clone(fresh), fresh[17])
	another := newClient(r, "another")
	// The failed batches leave the transaction usable: what comes after
	// them is committed.
	update(t, s, func(tx store.Tx) error {
		wantErr(t, "a batch with an existing id", tx.InsertClients(withExisting), store.ErrExists)
		wantErr(t, "a batch with an id twice", tx.InsertClients(withTwice), store.ErrExists)
		return tx.InsertClient(another)
	})
	view(t, s, func(tx store.Tx) error {
		n, err := tx.CountClients()
		ok(t, "CountClients", err)
		if n != 2 {
			t.Errorf("CountClients = %d, want 2 (no client of the refused batches)", n)
		}
		for _, c := range fresh {
			if _, err := tx.GetClient(c.ID); err == nil {
				t.Fatalf("client %s of a refused batch was inserted", c.ID)
			}
		}
		_, err = tx.GetClient(another.ID)
		ok(t, "GetClient of the insert after the refused batches", err)
		return nil
	})
}

func testClientPagination(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 523)
	for _, limit := range []int{1, 7, 100, 523, 1000} {
		var got []e4.ID
		view(t, s, func(tx store.Tx) error {
			var after e4.ID
			for pages := 0; ; pages++ {
				if pages > len(ids)+1 {
					t.Fatalf("limit %d: pagination does not end", limit)
				}
				page, err := tx.ListClients(after, limit)
				ok(t, "ListClients", err)
				if len(page) > limit {
					t.Fatalf("limit %d: page of %d", limit, len(page))
				}
				for _, c := range page {
					got = append(got, c.ID)
				}
				if len(page) < limit {
					return nil
				}
				after = page[len(page)-1].ID
			}
		})
		if !slices.Equal(got, ids) {
			t.Fatalf("limit %d: pages list %d clients, want all %d once each in id order", limit, len(got), len(ids))
		}
	}
}

func testLinks(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 40)
	source, targets := ids[0], ids[1:]
	unknown := randomID(r)
	update(t, s, func(tx store.Tx) error {
		for _, target := range targets {
			ok(t, "AddLink", tx.AddLink(source, target))
		}
		wantErr(t, "AddLink twice", tx.AddLink(source, targets[3]), store.ErrExists)
		wantErr(t, "AddLink from an unknown client", tx.AddLink(unknown, targets[0]), store.ErrNotFound)
		wantErr(t, "AddLink to an unknown client", tx.AddLink(source, unknown), store.ErrNotFound)
		ok(t, "RemoveLink", tx.RemoveLink(source, targets[5]))
		wantErr(t, "RemoveLink twice", tx.RemoveLink(source, targets[5]), store.ErrNotFound)
		return nil
	})
	want := slices.Delete(slices.Clone(targets), 5, 6)
	view(t, s, func(tx store.Tx) error {
		got := pageIDs(t, func(after e4.ID) ([]e4.ID, error) { return tx.LinkTargets(source, after, 6) }, 6)
		if !slices.Equal(got, want) {
			t.Errorf("LinkTargets pages = %d ids, want the %d linked ones in order", len(got), len(want))
		}
		none, err := tx.LinkTargets(targets[0], e4.ID{}, 10)
		ok(t, "LinkTargets of a client without links", err)
		if len(none) != 0 {
			t.Errorf("LinkTargets of a client without links = %v", none)
		}
		_, err = tx.LinkTargets(unknown, e4.ID{}, 10)
		wantErr(t, "LinkTargets of an unknown client", err, store.ErrNotFound)
		return nil
	})
}

// pageIDs follows the pages of a list of ids to the end.
func pageIDs(t testing.TB, list func(after e4.ID) ([]e4.ID, error), limit int) []e4.ID {
	t.Helper()
	var all []e4.ID
	var after e4.ID
	for range 100000 {
		page, err := list(after)
		ok(t, "list page", err)
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		after = page[len(page)-1]
	}
	t.Fatal("pagination does not end")
	return nil
}

func testDeleteClientCascades(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 3)
	gone, other, third := ids[0], ids[1], ids[2]
	insertTopics(t, s, "a", "b")
	addMembers(t, s, "a", gone, other)
	addMembers(t, s, "b", gone)
	cmd := newCommand(r, gone, "SetTopicKey", "a")
	update(t, s, func(tx store.Tx) error {
		ok(t, "AddLink from", tx.AddLink(gone, other))
		ok(t, "AddLink to", tx.AddLink(other, gone))
		ok(t, "AddLink to", tx.AddLink(third, gone))
		ok(t, "AddLink unrelated", tx.AddLink(third, other))
		ok(t, "EnqueueCommands", tx.EnqueueCommands([]store.Command{cmd}))
		return tx.DeleteClient(gone)
	})
	view(t, s, func(tx store.Tx) error {
		for _, topic := range []string{"a", "b"} {
			member, err := tx.IsMember(gone, topic)
			ok(t, "IsMember", err)
			if member {
				t.Errorf("the deleted client is still in topic %s", topic)
			}
		}
		n, err := tx.CountClientsOfTopic("a")
		ok(t, "CountClientsOfTopic", err)
		if n != 1 {
			t.Errorf("topic a has %d members after the delete, want 1", n)
		}
		for _, source := range []e4.ID{other, third} {
			targets, err := tx.LinkTargets(source, e4.ID{}, 10)
			ok(t, "LinkTargets", err)
			if slices.Contains(targets, gone) {
				t.Errorf("a link to the deleted client is left")
			}
		}
		targets, err := tx.LinkTargets(third, e4.ID{}, 10)
		ok(t, "LinkTargets", err)
		if !slices.Equal(targets, []e4.ID{other}) {
			t.Errorf("the unrelated link is gone: %v", targets)
		}
		got, err := tx.GetCommand(cmd.ID)
		ok(t, "GetCommand of the deleted client's command", err)
		if got.ClientID != gone || got.State != store.CommandPending {
			t.Errorf("outbox entry changed by the delete: %+v", got)
		}
		_, err = tx.TopicsOfClient(gone, "", 10)
		wantErr(t, "TopicsOfClient of the deleted client", err, store.ErrNotFound)
		return nil
	})
}
