package api_test

import (
	"context"
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/store"
)

// TestAccessForOtherFrontEnds: Access checks tokens like the API does,
// audits a change in the change's transaction and a failure on its own,
// and its token management applies at once.
func TestAccessForOtherFrontEnds(t *testing.T) {
	c := newTestC2(t, options{noBroker: true})
	ctx := context.Background()
	acc := c.srv.Access()
	admin, err := acc.Check(ctx, c.admin)
	if err != nil || admin.Scope != api.ScopeAdmin || admin.Actor != "token:admin" {
		t.Fatalf("Check(admin) = %+v, %v", admin, err)
	}
	for _, bad := range []string{"", "e4c2_unknown", "not-a-token"} {
		if _, err := acc.Check(ctx, bad); !errors.Is(err, api.ErrTokenRefused) {
			t.Errorf("Check(%q) = %v, want ErrTokenRefused", bad, err)
		}
	}
	secret, tok, err := acc.CreateToken(ctx, admin, "198.51.100.7:1234", "web-op", "operate", 0)
	if err != nil || tok.Scope != "operate" || tok.CreatedBy != "token:admin" {
		t.Fatalf("CreateToken: %+v, %v", tok, err)
	}
	if _, _, err := acc.CreateToken(ctx, admin, "198.51.100.7:1234", "web-op", "read", 0); err == nil {
		t.Fatal("a second token with the same name")
	}
	op, err := acc.Check(ctx, secret)
	if err != nil || op.Scope != api.ScopeOperate {
		t.Fatalf("Check(new token) = %+v, %v", op, err)
	}

	// A change and a failure, each audited once, with the caller's address.
	cctx, finish := acc.Audited(ctx, op, "AddTopic", "topic=plant/a", "198.51.100.7:1234")
	if err := finish(func() error { _, err := c.svc.AddTopic(cctx, "plant/a"); return err }()); err != nil {
		t.Fatal(err)
	}
	cctx, finish = acc.Audited(ctx, op, "AddTopic", "topic=plant/a", "198.51.100.7:1234")
	_, addErr := c.svc.AddTopic(cctx, "plant/a")
	if err := finish(addErr); err == nil || !errors.Is(addErr, c2.ErrExists) {
		t.Fatalf("a second AddTopic: %v", err)
	}
	recs, err := acc.AuditLog(ctx, store.AuditFilter{Actor: "token:web-op", Action: "AddTopic"}, 0, 10)
	if err != nil || len(recs) != 2 || recs[0].Outcome != "ok" || recs[1].Outcome != "AlreadyExists" || recs[0].Remote != "198.51.100.7:1234" {
		t.Fatalf("audit records: %+v, %v", recs, err)
	}

	// Revocation applies to the next check, through the cache too.
	if err := acc.Recheck(ctx, op); err != nil {
		t.Fatal(err)
	}
	if err := acc.RevokeToken(ctx, admin, "198.51.100.7:1234", "web-op"); err != nil {
		t.Fatal(err)
	}
	if err := acc.Recheck(ctx, op); !errors.Is(err, api.ErrTokenRefused) {
		t.Fatalf("Recheck after revocation: %v", err)
	}
	if err := acc.RevokeToken(ctx, admin, "", "no-such-token"); err == nil {
		t.Fatal("revoked a token that does not exist")
	}
	list, err := acc.Tokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Tokens: %d, %v", len(list), err)
	}
	if err := acc.Record(ctx, store.AuditRecord{Actor: "web:anonymous", Action: "SignIn", Outcome: "Unauthenticated"}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := acc.AuditLog(ctx, store.AuditFilter{Action: "SignIn"}, 0, 10); len(recs) != 1 || recs[0].Time.IsZero() {
		t.Fatalf("Record: %+v", recs)
	}
}
