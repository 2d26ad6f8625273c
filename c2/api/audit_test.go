package api_test

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"github.com/e4-iot/e4kit/c2/api"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// findAudit returns the records of action, oldest first.
func findAudit(recs []store.AuditRecord, action string) []store.AuditRecord {
	var out []store.AuditRecord
	for _, r := range recs {
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

// TestAuditRecords: every state-changing call leaves a record (who,
// what, target, outcome, time) in the database and a JSON log line, for
// gRPC and HTTP callers, successes and failures; reads leave none; no key
// or password is in either.
func TestAuditRecords(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	ops := c.token("ops", "operate")
	reader := c.token("reader", "read")

	added, err := cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: "meter-1", Password: "correct horse battery staple"})
	if err != nil {
		t.Fatal(err)
	}
	given := bytes.Repeat([]byte{0xab}, e4.KeyLen)
	if _, err := cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: "meter-2", Key: given}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: "meter-1"})
	wantCode(t, "duplicate", err, codes.AlreadyExists)
	_, err = cl.AddTopic(as(reader), &c2pb.AddTopicRequest{Topic: "denied"})
	wantCode(t, "read token", err, codes.PermissionDenied)
	r := c.do("POST", "/v1/topics", ops, map[string]any{"topic": "meters/power"})
	wantStatus(t, "HTTP add topic", r, http.StatusOK)
	if _, err := cl.ListClients(as(ops), &c2pb.ListClientsRequest{}); err != nil {
		t.Fatal(err)
	}
	newKey, err := cl.NewClientKey(as(ops), &c2pb.NewClientKeyRequest{Client: "meter-2"})
	if err != nil {
		t.Fatal(err)
	}

	recs := c.auditRecords()
	adds := findAudit(recs, "AddClient")
	if len(adds) != 3 {
		t.Fatalf("%d AddClient records, want 3: %+v", len(adds), recs)
	}
	if a := adds[0]; a.Actor != "token:ops" || a.Outcome != "ok" || a.Target != "name=meter-1" || a.Time.IsZero() || !strings.HasPrefix(a.Remote, "127.0.0.1:") {
		t.Fatalf("first AddClient record: %+v", a)
	}
	if a := adds[2]; a.Outcome != "AlreadyExists" || !strings.Contains(a.Detail, "already exists") {
		t.Fatalf("failed AddClient record: %+v", a)
	}
	denied := findAudit(recs, "AddTopic")
	if len(denied) != 2 || denied[0].Outcome != "PermissionDenied" || denied[0].Actor != "token:reader" {
		t.Fatalf("AddTopic records: %+v", denied)
	}
	if h := denied[1]; h.Outcome != "ok" || h.Target != "topic=meters/power" || !strings.HasPrefix(h.Remote, "127.0.0.1:") {
		t.Fatalf("HTTP AddTopic record: %+v", h)
	}
	if n := len(findAudit(recs, "ListClients")); n != 0 {
		t.Fatalf("%d records of a read", n)
	}
	if n := len(findAudit(recs, "CreateToken")); n != 3 { // bootstrap + ops + reader
		t.Fatalf("%d CreateToken records, want 3", n)
	}

	secrets := map[string][]byte{"generated key": added.Key, "given key": given, "new key": newKey.Key,
		"password": []byte("correct horse battery staple"), "ops token": []byte(ops), "admin token": []byte(c.admin)}
	logs := c.logs.String()
	if !strings.Contains(logs, `"msg":"audit"`) || !strings.Contains(logs, `"action":"AddClient"`) {
		t.Fatalf("no JSON audit lines in the log:\n%s", logs)
	}
	dump := rawAuditDump(t, c.dbPath)
	for what, secret := range secrets {
		for _, form := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(dump, form) || strings.Contains(logs, form) {
				t.Fatalf("the %s appears in the audit log or the server log", what)
			}
		}
	}

	list, err := cl.ListAudit(as(c.admin), &c2pb.ListAuditRequest{Action: "AddClient", Outcome: "ok"})
	if err != nil || len(list.Records) != 2 {
		t.Fatalf("ListAudit filtered: %v %v", list, err)
	}
	r = c.do("GET", "/v1/audit?actor=token:reader", c.admin, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "PermissionDenied") {
		t.Fatalf("HTTP audit list: %d %s", r.status, r.body)
	}
}

// rawAuditDump reads every text of the audit table straight from the file.
func rawAuditDump(t *testing.T, path string) string {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT actor || ' ' || action || ' ' || target || ' ' || outcome || ' ' || detail || ' ' || remote FROM audit_log")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + "\n")
	}
	return b.String()
}

// TestAuditFailClosed: when the audit record cannot be written, the call
// fails and its change is not made, for service calls and token calls.
func TestAuditFailClosed(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	ops := c.token("ops", "operate")
	if _, err := cl.AddTopic(as(ops), &c2pb.AddTopicRequest{Topic: "existing"}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+c.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("ALTER TABLE audit_log RENAME TO audit_log_away"); err != nil {
		t.Fatal(err)
	}
	_, err = cl.AddTopic(as(ops), &c2pb.AddTopicRequest{Topic: "unaudited"})
	wantCode(t, "AddTopic without an audit log", err, codes.Unavailable)
	_, err = cl.CreateToken(as(c.admin), &c2pb.CreateTokenRequest{Name: "unaudited", Scope: "read"})
	wantCode(t, "CreateToken without an audit log", err, codes.Unavailable)
	// Protecting changes nothing in the database: its record is written
	// after the call, and the result is withheld when that fails.
	_, err = cl.ProtectMessage(as(ops), &c2pb.ProtectMessageRequest{Topic: "existing", Payload: []byte("x")})
	wantCode(t, "ProtectMessage without an audit log", err, codes.Unavailable)
	if _, err := db.Exec("ALTER TABLE audit_log_away RENAME TO audit_log"); err != nil {
		t.Fatal(err)
	}
	_, err = cl.GetTopic(as(ops), &c2pb.TopicRequest{Topic: "unaudited"})
	wantCode(t, "the topic of the refused AddTopic", err, codes.NotFound)
	tokens, err := cl.ListTokens(as(c.admin), &c2pb.Empty{})
	if err != nil || len(tokens.Tokens) != 2 {
		t.Fatalf("tokens after the refused CreateToken: %v %v", tokens, err)
	}
	if _, err := cl.AddTopic(as(ops), &c2pb.AddTopicRequest{Topic: "audited"}); err != nil {
		t.Fatalf("AddTopic once the audit log is back: %v", err)
	}
}

// TestOnPostgreSQL: the API over the PostgreSQL store (SERIALIZABLE
// transactions, retried on conflicts): concurrent audited changes all
// succeed with one record each, tokens work, a refused change leaves its
// record.
func TestOnPostgreSQL(t *testing.T) {
	c := newTestC2(t, options{postgres: true, edit: func(cfg *api.Config) { cfg.RatePerSecond = -1 }})
	cl := c.client()
	ops := c.token("ops", "operate")
	if _, err := cl.AddTopic(as(ops), &c2pb.AddTopicRequest{Topic: "pg/topic"}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := fmt.Sprintf("pg-client-%d", i)
			if _, err := cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: name}); err != nil {
				errs <- err
				return
			}
			_, err := cl.AddMember(as(ops), &c2pb.MemberRequest{Client: name, Topic: "pg/topic"})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	_, err := cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: "pg-client-0"})
	wantCode(t, "duplicate", err, codes.AlreadyExists)
	list, err := cl.ListAudit(as(c.admin), &c2pb.ListAuditRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, r := range list.Records {
		counts[r.Action+" "+r.Outcome]++
	}
	if counts["AddClient ok"] != n || counts["AddMember ok"] != n || counts["AddClient AlreadyExists"] != 1 || counts["CreateToken ok"] != 2 {
		t.Fatalf("audit counts: %v", counts)
	}
	members, err := cl.ListMembers(as(ops), &c2pb.ListMembersRequest{Topic: "pg/topic"})
	if err != nil || members.Total != n {
		t.Fatalf("members: %v %v", members, err)
	}
}
