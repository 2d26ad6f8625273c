package storetest

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

func sameTopic(t testing.TB, got, want store.Topic) {
	t.Helper()
	if got.Name != want.Name || got.Hash != want.Hash || !bytes.Equal(got.SealedKey, want.SealedKey) ||
		got.KeyVersion != want.KeyVersion || !bytes.Equal(got.PrevSealedKey, want.PrevSealedKey) ||
		(got.PrevSealedKey == nil) != (want.PrevSealedKey == nil) ||
		!got.CreatedAt.Equal(want.CreatedAt.Truncate(time.Microsecond)) ||
		!got.RotatedAt.Equal(want.RotatedAt.Truncate(time.Microsecond)) {
		t.Fatalf("got topic %+v, want %+v", got, want)
	}
}

func testTopicLifecycle(t *testing.T, s store.Store) {
	tp := newTopic("sensors/temperature", 1)
	big := newTopic("big/version", math.MaxInt64)
	update(t, s, func(tx store.Tx) error {
		ok(t, "InsertTopic", tx.InsertTopic(tp))
		ok(t, "InsertTopic with the largest version", tx.InsertTopic(big))
		wantErr(t, "InsertTopic twice", tx.InsertTopic(tp), store.ErrExists)
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetTopic(tp.Name)
		ok(t, "GetTopic", err)
		sameTopic(t, got, tp)
		got, err = tx.GetTopic(big.Name)
		ok(t, "GetTopic", err)
		sameTopic(t, got, big)
		_, err = tx.GetTopic("unknown")
		wantErr(t, "GetTopic of an unknown name", err, store.ErrNotFound)
		return nil
	})
	rotated := base.Add(48 * time.Hour)
	update(t, s, func(tx store.Tx) error {
		ok(t, "UpdateTopicKey", tx.UpdateTopicKey(tp.Name, []byte("rotated key"), tp.SealedKey, 2, rotated))
		wantErr(t, "UpdateTopicKey of an unknown topic", tx.UpdateTopicKey("unknown", []byte("k"), nil, 2, rotated), store.ErrNotFound)
		wantFailure(t, "UpdateTopicKey beyond int64", tx.UpdateTopicKey(tp.Name, []byte("k"), nil, math.MaxInt64+1, rotated))
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetTopic(tp.Name)
		ok(t, "GetTopic", err)
		tp.SealedKey, tp.PrevSealedKey, tp.KeyVersion, tp.RotatedAt = []byte("rotated key"), tp.SealedKey, 2, rotated
		sameTopic(t, got, tp)
		n, err := tx.CountTopics()
		ok(t, "CountTopics", err)
		if n != 2 {
			t.Errorf("CountTopics = %d, want 2", n)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		ok(t, "DeleteTopic", tx.DeleteTopic(tp.Name))
		wantErr(t, "DeleteTopic twice", tx.DeleteTopic(tp.Name), store.ErrNotFound)
		_, err := tx.GetTopic(tp.Name)
		wantErr(t, "GetTopic after the delete", err, store.ErrNotFound)
		n, err := tx.CountTopics()
		ok(t, "CountTopics", err)
		if n != 1 {
			t.Errorf("CountTopics after the delete = %d, want 1", n)
		}
		return nil
	})
}

func testTopicValidation(t *testing.T, s store.Store) {
	update(t, s, func(tx store.Tx) error {
		wantFailure(t, "InsertTopic with an empty name", tx.InsertTopic(newTopic("", 1)))
		wantFailure(t, "InsertTopic with invalid UTF-8", tx.InsertTopic(newTopic("a\xc3", 1)))
		wantFailure(t, "InsertTopic with a NUL", tx.InsertTopic(newTopic("a\x00b", 1)))
		wantFailure(t, "InsertTopic with a version beyond int64", tx.InsertTopic(newTopic("v", math.MaxInt64+1)))
		_, err := tx.GetTopic("a\xc3")
		wantFailure(t, "GetTopic with invalid UTF-8", err)
		_, err = tx.ListTopics("", -1)
		wantFailure(t, "ListTopics with a negative limit", err)
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		n, err := tx.CountTopics()
		ok(t, "CountTopics", err)
		if n != 0 {
			t.Errorf("CountTopics = %d after refused inserts", n)
		}
		return nil
	})
}

// topicNames are names whose byte order differs from a case-insensitive
// or locale order.
func topicNames() []string {
	names := []string{"Zeta", "alpha", "Alpha", "a/b", "a-b", "a", "é", "z", "ä/1", "日本", "0", "e4/control"}
	for i := range 150 {
		names = append(names, fmt.Sprintf("devices/%03d/state", i))
	}
	return names
}

func testTopicPagination(t *testing.T, s store.Store) {
	names := topicNames()
	insertTopics(t, s, names...)
	sort.Strings(names) // byte order
	for _, limit := range []int{1, 5, 64, len(names), len(names) + 1} {
		var got []string
		view(t, s, func(tx store.Tx) error {
			got = pageStrings(t, func(after string) ([]string, error) {
				page, err := tx.ListTopics(after, limit)
				var names []string
				for _, tp := range page {
					names = append(names, tp.Name)
				}
				return names, err
			}, limit)
			return nil
		})
		if !slices.Equal(got, names) {
			t.Fatalf("limit %d: ListTopics pages = %q, want %q", limit, got, names)
		}
	}
	view(t, s, func(tx store.Tx) error {
		page, err := tx.ListTopics("", 3)
		ok(t, "ListTopics", err)
		for _, got := range page {
			sameTopic(t, got, newTopic(got.Name, 1))
		}
		return nil
	})
}

// pageStrings follows the pages of a list of names to the end.
func pageStrings(t testing.TB, list func(after string) ([]string, error), limit int) []string {
	t.Helper()
	var all []string
	after := ""
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

func testMemberships(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 2)
	c, other := ids[0], ids[1]
	insertTopics(t, s, "t1", "t2")
	unknown := randomID(r)
	update(t, s, func(tx store.Tx) error {
		ok(t, "AddMember", tx.AddMember(c, "t1"))
		wantErr(t, "AddMember twice", tx.AddMember(c, "t1"), store.ErrExists)
		wantErr(t, "AddMember of an unknown client", tx.AddMember(unknown, "t1"), store.ErrNotFound)
		wantErr(t, "AddMember to an unknown topic", tx.AddMember(c, "nope"), store.ErrNotFound)
		ok(t, "AddMember", tx.AddMember(c, "t2"))
		ok(t, "AddMember", tx.AddMember(other, "t2"))
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		for _, m := range []struct {
			client e4.ID
			topic  string
			want   bool
		}{{c, "t1", true}, {c, "t2", true}, {other, "t1", false}, {other, "t2", true}, {unknown, "t1", false}} {
			got, err := tx.IsMember(m.client, m.topic)
			ok(t, "IsMember", err)
			if got != m.want {
				t.Errorf("IsMember(%s, %s) = %v, want %v", m.client, m.topic, got, m.want)
			}
		}
		wantCount(t, "CountTopicsOfClient", 2)(tx.CountTopicsOfClient(c))
		wantCount(t, "CountClientsOfTopic", 2)(tx.CountClientsOfTopic("t2"))
		_, err := tx.CountTopicsOfClient(unknown)
		wantErr(t, "CountTopicsOfClient of an unknown client", err, store.ErrNotFound)
		_, err = tx.CountClientsOfTopic("nope")
		wantErr(t, "CountClientsOfTopic of an unknown topic", err, store.ErrNotFound)
		_, err = tx.ClientsOfTopic("nope", e4.ID{}, 10)
		wantErr(t, "ClientsOfTopic of an unknown topic", err, store.ErrNotFound)
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		ok(t, "RemoveMember", tx.RemoveMember(c, "t2"))
		wantErr(t, "RemoveMember twice", tx.RemoveMember(c, "t2"), store.ErrNotFound)
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		topics, err := tx.TopicsOfClient(c, "", 10)
		ok(t, "TopicsOfClient", err)
		if !slices.Equal(topics, []string{"t1"}) {
			t.Errorf("TopicsOfClient after RemoveMember = %q", topics)
		}
		clients, err := tx.ClientsOfTopic("t2", e4.ID{}, 10)
		ok(t, "ClientsOfTopic", err)
		if !slices.Equal(clients, []e4.ID{other}) {
			t.Errorf("ClientsOfTopic after RemoveMember = %v", clients)
		}
		return nil
	})
}

// wantCount checks a count returned with its error.
func wantCount(t testing.TB, what string, want int64) func(int64, error) {
	return func(got int64, err error) {
		t.Helper()
		ok(t, what, err)
		if got != want {
			t.Errorf("%s = %d, want %d", what, got, want)
		}
	}
}

func testMembershipPagination(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 150)
	names := topicNames()
	insertTopics(t, s, names...)
	sort.Strings(names)
	addMembers(t, s, "a", ids...)
	update(t, s, func(tx store.Tx) error {
		for _, n := range names {
			if n != "a" {
				ok(t, "AddMember", tx.AddMember(ids[0], n))
			}
		}
		return tx.AddMember(ids[1], "z")
	})
	view(t, s, func(tx store.Tx) error {
		got := pageIDs(t, func(after e4.ID) ([]e4.ID, error) { return tx.ClientsOfTopic("a", after, 13) }, 13)
		if !slices.Equal(got, ids) {
			t.Errorf("ClientsOfTopic pages = %d ids, want the %d members in id order", len(got), len(ids))
		}
		topics := pageStrings(t, func(after string) ([]string, error) { return tx.TopicsOfClient(ids[0], after, 9) }, 9)
		if !slices.Equal(topics, names) {
			t.Errorf("TopicsOfClient pages = %q, want %q", topics, names)
		}
		wantCount(t, "CountTopicsOfClient", int64(len(names)))(tx.CountTopicsOfClient(ids[0]))
		wantCount(t, "CountClientsOfTopic", int64(len(ids)))(tx.CountClientsOfTopic("a"))
		wantCount(t, "CountClientsOfTopic", 2)(tx.CountClientsOfTopic("z"))
		return nil
	})
}

func testRemoveAllMemberships(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 2)
	insertTopics(t, s, "b", "a", "c")
	addMembers(t, s, "b", ids...)
	addMembers(t, s, "a", ids[0])
	update(t, s, func(tx store.Tx) error {
		topics, err := tx.RemoveAllMemberships(ids[0])
		ok(t, "RemoveAllMemberships", err)
		if !slices.Equal(topics, []string{"a", "b"}) {
			t.Errorf("RemoveAllMemberships = %q, want [a b]", topics)
		}
		topics, err = tx.RemoveAllMemberships(ids[0])
		ok(t, "RemoveAllMemberships again", err)
		if len(topics) != 0 {
			t.Errorf("RemoveAllMemberships again = %q", topics)
		}
		_, err = tx.RemoveAllMemberships(randomID(r))
		wantErr(t, "RemoveAllMemberships of an unknown client", err, store.ErrNotFound)
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		wantCount(t, "CountTopicsOfClient", 0)(tx.CountTopicsOfClient(ids[0]))
		wantCount(t, "CountClientsOfTopic of the other member", 1)(tx.CountClientsOfTopic("b"))
		return nil
	})
}

func testDeleteTopicCascades(t *testing.T, s store.Store) {
	r := newRand(t)
	ids := insertClients(t, s, r, 5)
	insertTopics(t, s, "gone", "kept")
	addMembers(t, s, "gone", ids...)
	addMembers(t, s, "kept", ids[:2]...)
	update(t, s, func(tx store.Tx) error { return tx.DeleteTopic("gone") })
	view(t, s, func(tx store.Tx) error {
		for _, id := range ids {
			member, err := tx.IsMember(id, "gone")
			ok(t, "IsMember", err)
			if member {
				t.Errorf("client %s is still in the deleted topic", id)
			}
		}
		topics, err := tx.TopicsOfClient(ids[0], "", 10)
		ok(t, "TopicsOfClient", err)
		if !slices.Equal(topics, []string{"kept"}) {
			t.Errorf("TopicsOfClient = %q, want [kept]", topics)
		}
		wantCount(t, "CountClientsOfTopic of the other topic", 2)(tx.CountClientsOfTopic("kept"))
		wantCount(t, "CountClients", 5)(tx.CountClients())
		return nil
	})
}

// testPreviousTopicKey: the previous key of a topic round-trips through
// inserts, rotations and lists, a rotation may keep none, and
// ForgetPreviousTopicKeys clears exactly the keys of the topics rotated
// before its time.
func testPreviousTopicKey(t *testing.T, s store.Store) {
	fresh := newTopic("fresh", 1)
	kept := newTopic("kept", 4)
	kept.PrevSealedKey = []byte("sealed previous key")
	update(t, s, func(tx store.Tx) error {
		ok(t, "InsertTopic without a previous key", tx.InsertTopic(fresh))
		ok(t, "InsertTopic with a previous key", tx.InsertTopic(kept))
		return nil
	})
	get := func(name string) store.Topic {
		t.Helper()
		var tp store.Topic
		view(t, s, func(tx store.Tx) (err error) {
			tp, err = tx.GetTopic(name)
			return err
		})
		return tp
	}
	sameTopic(t, get("fresh"), fresh)
	sameTopic(t, get("kept"), kept)

	// Rotations: "fresh" keeps its replaced key, "kept" one that revokes
	// (no previous key), "old" is rotated long before the others.
	old := newTopic("old", 1)
	update(t, s, func(tx store.Tx) error {
		ok(t, "InsertTopic", tx.InsertTopic(old))
		ok(t, "rotation keeping the key", tx.UpdateTopicKey("fresh", []byte("k2"), fresh.SealedKey, 2, base.Add(3*time.Hour)))
		ok(t, "rotation revoking the key", tx.UpdateTopicKey("kept", []byte("k5"), nil, 5, base.Add(3*time.Hour)))
		ok(t, "rotation of old", tx.UpdateTopicKey("old", []byte("o2"), old.SealedKey, 2, base.Add(time.Hour)))
		return nil
	})
	fresh.PrevSealedKey, fresh.SealedKey, fresh.KeyVersion, fresh.RotatedAt = fresh.SealedKey, []byte("k2"), 2, base.Add(3*time.Hour)
	kept.PrevSealedKey, kept.SealedKey, kept.KeyVersion, kept.RotatedAt = nil, []byte("k5"), 5, base.Add(3*time.Hour)
	old.PrevSealedKey, old.SealedKey, old.KeyVersion, old.RotatedAt = old.SealedKey, []byte("o2"), 2, base.Add(time.Hour)
	view(t, s, func(tx store.Tx) error {
		list, err := tx.ListTopics("", 10)
		ok(t, "ListTopics", err)
		if len(list) != 3 {
			t.Fatalf("ListTopics: %d topics, want 3", len(list))
		}
		for i, want := range []store.Topic{fresh, kept, old} {
			sameTopic(t, list[i], want)
		}
		return nil
	})

	// The window ends 2 hours after base: "old" (rotated at 1 hour) loses
	// its previous key, "fresh" (at 3 hours) keeps it; a rotation exactly
	// at the limit is not before it.
	has := func(before time.Time) bool {
		t.Helper()
		var found bool
		view(t, s, func(tx store.Tx) (err error) {
			found, err = tx.HasPreviousTopicKeys(before)
			return err
		})
		return found
	}
	if has(base.Add(time.Hour)) || !has(base.Add(2*time.Hour)) {
		t.Errorf("HasPreviousTopicKeys at 1 hour and 2 hours: %v, %v; want false, true", has(base.Add(time.Hour)), has(base.Add(2*time.Hour)))
	}
	var n int64
	update(t, s, func(tx store.Tx) (err error) {
		n, err = tx.ForgetPreviousTopicKeys(base.Add(time.Hour))
		return err
	})
	if n != 0 {
		t.Errorf("ForgetPreviousTopicKeys at the rotation time: %d cleared, want 0", n)
	}
	update(t, s, func(tx store.Tx) (err error) {
		n, err = tx.ForgetPreviousTopicKeys(base.Add(2 * time.Hour))
		return err
	})
	if n != 1 {
		t.Errorf("ForgetPreviousTopicKeys: %d cleared, want 1", n)
	}
	old.PrevSealedKey = nil
	sameTopic(t, get("old"), old)
	sameTopic(t, get("fresh"), fresh)
	sameTopic(t, get("kept"), kept)
	update(t, s, func(tx store.Tx) (err error) {
		n, err = tx.ForgetPreviousTopicKeys(base.Add(2 * time.Hour))
		return err
	})
	if n != 0 {
		t.Errorf("ForgetPreviousTopicKeys again: %d cleared, want 0", n)
	}
	if has(base.Add(2 * time.Hour)) {
		t.Error("HasPreviousTopicKeys after the keys were forgotten: true")
	}
	if !has(base.Add(4 * time.Hour)) {
		t.Error("HasPreviousTopicKeys after the newer rotation: false, want true (fresh keeps its key)")
	}
}
