package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// access returns tx as a store.AccessTx, failing the test when the backend
// does not implement it.
func access(t testing.TB, tx store.Tx) store.AccessTx {
	t.Helper()
	a, ok := tx.(store.AccessTx)
	if !ok {
		t.Fatalf("the backend's Tx (%T) does not implement store.AccessTx", tx)
	}
	return a
}

func tokenHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func newToken(name, scope string) store.Token {
	return store.Token{Name: name, Hash: tokenHash("secret of " + name), Scope: scope, CreatedBy: "token:root", CreatedAt: base}
}

func sameTime(a, b time.Time) bool {
	return a.Equal(b.UTC().Truncate(time.Microsecond))
}

func testTokenLifecycle(t *testing.T, s store.Store) {
	alice := newToken("alice", "operate")
	alice.ExpiresAt = base.Add(24 * time.Hour)
	update(t, s, func(tx store.Tx) error { return access(t, tx).InsertToken(alice) })
	update(t, s, func(tx store.Tx) error { return access(t, tx).InsertToken(newToken("bob", "read")) })

	view(t, s, func(tx store.Tx) error {
		got, err := access(t, tx).TokenByHash(alice.Hash)
		ok(t, "TokenByHash", err)
		if got.Name != "alice" || got.Scope != "operate" || got.CreatedBy != "token:root" || !bytes.Equal(got.Hash, alice.Hash) {
			t.Fatalf("TokenByHash: %+v", got)
		}
		if !sameTime(got.CreatedAt, base) || !sameTime(got.ExpiresAt, alice.ExpiresAt) || !got.RevokedAt.IsZero() {
			t.Fatalf("token times: created %v expires %v revoked %v", got.CreatedAt, got.ExpiresAt, got.RevokedAt)
		}
		bob, err := access(t, tx).TokenByHash(tokenHash("secret of bob"))
		ok(t, "TokenByHash bob", err)
		if !bob.ExpiresAt.IsZero() {
			t.Fatalf("a token without expiry came back expiring at %v", bob.ExpiresAt)
		}
		_, err = access(t, tx).TokenByHash(tokenHash("unknown"))
		wantErr(t, "unknown hash", err, store.ErrNotFound)
		_, err = access(t, tx).TokenByHash([]byte("short"))
		wantErr(t, "short hash", err, store.ErrNotFound)
		n, err := access(t, tx).CountTokens()
		ok(t, "CountTokens", err)
		if n != 2 {
			t.Fatalf("CountTokens = %d, want 2", n)
		}
		return nil
	})

	sameName := newToken("alice", "admin")
	sameName.Hash = tokenHash("another secret")
	err := s.Update(t.Context(), func(tx store.Tx) error { return access(t, tx).InsertToken(sameName) })
	wantErr(t, "duplicate name", err, store.ErrExists)
	sameHash := newToken("carol", "admin")
	sameHash.Hash = alice.Hash
	err = s.Update(t.Context(), func(tx store.Tx) error { return access(t, tx).InsertToken(sameHash) })
	wantErr(t, "duplicate hash", err, store.ErrExists)

	first := base.Add(time.Hour)
	update(t, s, func(tx store.Tx) error { return access(t, tx).RevokeToken("alice", first) })
	update(t, s, func(tx store.Tx) error { return access(t, tx).RevokeToken("alice", first.Add(time.Hour)) })
	err = s.Update(t.Context(), func(tx store.Tx) error { return access(t, tx).RevokeToken("nobody", first) })
	wantErr(t, "revoking an unknown token", err, store.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		got, err := access(t, tx).TokenByHash(alice.Hash)
		ok(t, "TokenByHash after revoke", err)
		if !sameTime(got.RevokedAt, first) {
			t.Fatalf("revoked at %v, want the first revocation %v", got.RevokedAt, first)
		}
		return nil
	})
}

func testTokenValidation(t *testing.T, s store.Store) {
	bad := map[string]store.Token{
		"empty name":    {Hash: tokenHash("x"), Scope: "read", CreatedAt: base},
		"short hash":    {Name: "x", Hash: []byte("short"), Scope: "read", CreatedAt: base},
		"empty scope":   {Name: "x", Hash: tokenHash("x"), CreatedAt: base},
		"invalid UTF-8": {Name: "x\xff", Hash: tokenHash("x"), Scope: "read", CreatedAt: base},
		"NUL in name":   {Name: "x\x00y", Hash: tokenHash("x"), Scope: "read", CreatedAt: base},
	}
	for what, tok := range bad {
		err := s.Update(t.Context(), func(tx store.Tx) error { return access(t, tx).InsertToken(tok) })
		wantFailure(t, what, err)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := access(t, tx).ListTokens("", 0)
		wantFailure(t, "ListTokens with limit 0", err)
		n, err := access(t, tx).CountTokens()
		ok(t, "CountTokens", err)
		if n != 0 {
			t.Fatalf("%d tokens stored by refused inserts", n)
		}
		return nil
	})
}

func testTokenPagination(t *testing.T, s store.Store) {
	var names []string
	for i := range 25 {
		names = append(names, fmt.Sprintf("token-%02d", i))
	}
	update(t, s, func(tx store.Tx) error {
		for _, n := range names {
			if err := access(t, tx).InsertToken(newToken(n, "read")); err != nil {
				return err
			}
		}
		return nil
	})
	var got []string
	after := ""
	for {
		var page []store.Token
		view(t, s, func(tx store.Tx) (err error) {
			page, err = access(t, tx).ListTokens(after, 10)
			return err
		})
		for _, tok := range page {
			got = append(got, tok.Name)
		}
		if len(page) < 10 {
			break
		}
		after = page[len(page)-1].Name
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("paged token names %v, want %v", got, names)
	}
}

func auditRecord(i int, actor, action, target, outcome string) store.AuditRecord {
	return store.AuditRecord{
		Time: base.Add(time.Duration(i) * time.Minute), Actor: actor, Action: action,
		Target: target, Outcome: outcome, Detail: "detail", Remote: "127.0.0.1:1234",
	}
}

func insertAudit(t testing.TB, s store.Store, recs ...store.AuditRecord) []int64 {
	t.Helper()
	var ids []int64
	update(t, s, func(tx store.Tx) error {
		ids = ids[:0]
		for _, r := range recs {
			id, err := access(t, tx).InsertAudit(r)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids
}

func listAudit(t testing.TB, s store.Store, f store.AuditFilter, after int64, limit int) []store.AuditRecord {
	t.Helper()
	var list []store.AuditRecord
	view(t, s, func(tx store.Tx) (err error) {
		list, err = access(t, tx).ListAudit(f, after, limit)
		return err
	})
	return list
}

func testAuditLog(t *testing.T, s store.Store) {
	ids := insertAudit(t, s,
		auditRecord(0, "token:alice", "AddClient", "dev-1", "ok"),
		auditRecord(1, "token:bob", "AddClient", "dev-2", "AlreadyExists"),
		auditRecord(2, "token:alice", "RotateTopic", "a/b", "ok"),
		auditRecord(3, "cert:CN=ops", "RemoveClient", "dev-1", "ok"),
	)
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("audit ids do not grow: %v", ids)
		}
	}
	all := listAudit(t, s, store.AuditFilter{}, 0, 100)
	if len(all) != 4 || all[0].ID != ids[0] || all[3].ID != ids[3] {
		t.Fatalf("ListAudit: %+v", all)
	}
	r := all[1]
	if r.Actor != "token:bob" || r.Action != "AddClient" || r.Target != "dev-2" || r.Outcome != "AlreadyExists" ||
		r.Detail != "detail" || r.Remote != "127.0.0.1:1234" || !sameTime(r.Time, base.Add(time.Minute)) {
		t.Fatalf("audit record round trip: %+v", r)
	}
	filters := map[string]struct {
		f    store.AuditFilter
		want []int64
	}{
		"actor":   {store.AuditFilter{Actor: "token:alice"}, []int64{ids[0], ids[2]}},
		"action":  {store.AuditFilter{Action: "AddClient"}, []int64{ids[0], ids[1]}},
		"target":  {store.AuditFilter{Target: "dev-1"}, []int64{ids[0], ids[3]}},
		"outcome": {store.AuditFilter{Outcome: "ok", Actor: "token:alice"}, []int64{ids[0], ids[2]}},
		"since":   {store.AuditFilter{Since: base.Add(2 * time.Minute)}, []int64{ids[2], ids[3]}},
		"until":   {store.AuditFilter{Until: base.Add(time.Minute)}, []int64{ids[0]}},
		"none":    {store.AuditFilter{Actor: "token:nobody"}, nil},
	}
	for name, tc := range filters {
		var got []int64
		for _, r := range listAudit(t, s, tc.f, 0, 100) {
			got = append(got, r.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("filter %s: ids %v, want %v", name, got, tc.want)
		}
	}
	page := listAudit(t, s, store.AuditFilter{}, ids[1], 2)
	if len(page) != 2 || page[0].ID != ids[2] || page[1].ID != ids[3] {
		t.Fatalf("ListAudit after %d limit 2: %+v", ids[1], page)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := access(t, tx).ListAudit(store.AuditFilter{}, 0, 0)
		wantFailure(t, "ListAudit with limit 0", err)
		return nil
	})
}

// testAuditOddText: texts a refused request may carry (invalid UTF-8,
// NUL, megabytes) are stored cleaned, not refused.
func testAuditOddText(t *testing.T, s store.Store) {
	long := strings.Repeat("é", 10000)
	insertAudit(t, s, store.AuditRecord{Time: base, Actor: "token:x\x00y", Action: "AddTopic", Target: "a\xffb", Outcome: "InvalidArgument", Detail: long})
	got := listAudit(t, s, store.AuditFilter{}, 0, 10)
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	r := got[0]
	if r.Actor != "token:xy" || r.Target != "a\uFFFDb" || len(r.Detail) > 4096 || !strings.HasPrefix(long, r.Detail) || r.Detail == "" {
		t.Fatalf("cleaned record: actor %q target %q detail of %d bytes", r.Actor, r.Target, len(r.Detail))
	}
}

// testAuditRollsBack: a record written in a transaction that fails is
// gone with the rest of it, so a record never claims a change that was
// not made.
func testAuditRollsBack(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	err := s.Update(t.Context(), func(tx store.Tx) error {
		if _, err := access(t, tx).InsertAudit(auditRecord(0, "token:a", "AddTopic", "t", "ok")); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "failing Update", err, boom)
	if got := listAudit(t, s, store.AuditFilter{}, 0, 10); len(got) != 0 {
		t.Fatalf("records of a rolled-back transaction: %+v", got)
	}
}
