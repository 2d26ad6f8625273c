package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// concretePath fills a route pattern's wildcards.
func concretePath(pattern string) string {
	p := strings.ReplaceAll(pattern, "{$}", "")
	return strings.ReplaceAll(p, "{job}", "nojob")
}

// stateCounts sums up what a refused change must leave alone.
func (c *testC2) stateCounts() string {
	ctx := context.Background()
	clients, _ := c.svc.CountClients(ctx)
	topics, _ := c.svc.CountTopics(ctx)
	members, _ := c.svc.CountClientsOfTopic(ctx, "plant/victim")
	tokens, _ := c.srv.Access().Tokens(ctx)
	revoked := 0
	for _, tk := range tokens {
		if !tk.RevokedAt.IsZero() {
			revoked++
		}
	}
	info, _ := c.svc.GetTopic(ctx, "plant/victim")
	policies, _ := c.svc.ListPolicies(ctx, "", 100)
	var paused []string
	for _, p := range policies {
		paused = append(paused, p.PausedReason+" since "+p.StartedAt.String())
	}
	return fmt.Sprintf("clients=%d topics=%d members=%d tokens=%d revoked=%d version=%d policies=%d paused=%q",
		clients, topics, members, len(tokens), revoked, info.KeyVersion, len(policies), paused)
}

// TestRouteTableRefusesChanges: every route that changes state refuses a
// session whose role is too weak, and a form without the session's CSRF
// token or with a forged one; every route but sign-in and the static files
// needs a session; nothing changes on the way.
func TestRouteTableRefusesChanges(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	victim, err := c.svc.AddClient(ctx, clientNamed("victim"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.svc.AddTopic(ctx, "plant/victim"); err != nil {
		t.Fatal(err)
	}
	if err := c.svc.AddMember(ctx, "plant/victim", victim.ID); err != nil {
		t.Fatal(err)
	}
	// A policy the forms name: refused removals, pauses and adds leave it.
	if _, err := c.svc.AddPolicy(ctx, c2.Policy{Name: "viewer", Kind: c2.TargetTopic, Selector: c2.SelectAll, Period: 7 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	reader, admin, anonymous := c.signedIn(c.reader), c.signedIn(c.admin), c.newBrowser()
	// Forms that would change something if they got through.
	form := func() url.Values {
		return url.Values{"id": {victim.ID.String()}, "name": {"viewer"}, "client": {"victim"}, "source": {"victim"},
			"target": {"victim"}, "scope": {"admin"}, "mode": {"no"}, "kind": {"topic"}, "selector": {"all"}, "trigger": {"period"},
			"span": {"1d"}, "reason": {"refused"}}
	}
	before := c.stateCounts()
	changing := 0
	for _, r := range c.gui.routes() {
		path := concretePath(r.Path)
		switch {
		case r.Method == http.MethodPost && r.Scope != public:
			changing++
			if r.Scope > read {
				if code, body := reader.post(path, form()); code != http.StatusForbidden || !strings.Contains(body, "role") {
					t.Errorf("POST %s with a read session: %d, want 403 for the role", path, code)
				}
			}
			f := form()
			if code, _ := admin.postRaw(path, f); code != http.StatusForbidden {
				t.Errorf("POST %s without a CSRF token: %d, want 403", path, code)
			}
			f.Set("csrf", strings.Repeat("A", len(admin.csrf)))
			if code, _ := admin.postRaw(path, f); code != http.StatusForbidden {
				t.Errorf("POST %s with a forged CSRF token: %d, want 403", path, code)
			}
			f.Set("csrf", reader.csrf) // another session's token
			if code, _ := admin.postRaw(path, f); code != http.StatusForbidden {
				t.Errorf("POST %s with another session's CSRF token: %d, want 403", path, code)
			}
			f.Set("csrf", admin.csrf)
			if code, _ := anonymous.postRaw(path, f); code != http.StatusUnauthorized {
				t.Errorf("POST %s without a session: %d, want 401", path, code)
			}
		case r.Method == http.MethodGet && r.Scope != public:
			if r.Scope > read {
				if code, _ := reader.get(path); code != http.StatusForbidden {
					t.Errorf("GET %s with a read session: %d, want 403", path, code)
				}
			}
			if code, _ := anonymous.get(path); code != http.StatusSeeOther {
				t.Errorf("GET %s without a session: %d, want a redirect to sign in", path, code)
			}
		case r.Method != http.MethodGet && r.Method != http.MethodPost:
			t.Errorf("route %s %s: only GET and POST are served", r.Method, r.Path)
		}
	}
	if changing < 20 {
		t.Fatalf("only %d changing routes in the table", changing)
	}
	if after := c.stateCounts(); after != before {
		t.Errorf("refused requests changed the state: %s, then %s", before, after)
	}
	// Both sessions still work: the refused sign-out did not sign out.
	for _, b := range []*browser{reader, admin} {
		if code, _ := b.get("/ui/clients"); code != http.StatusOK {
			t.Errorf("a session ended by refused requests: %d", code)
		}
	}
	// Other methods are not served at all.
	req, _ := http.NewRequest(http.MethodDelete, c.base+"/ui/clients", nil)
	if code, _ := admin.do(req); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /ui/clients: %d, want 405", code)
	}
}

func TestSecurityHeaders(t *testing.T) {
	c := startC2(t, e4.SymKey)
	b := c.newBrowser()
	resp, err := b.http.Get(c.base + "/ui/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]string{
		"Content-Security-Policy": contentSecurityPolicy, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	for _, must := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(contentSecurityPolicy, must) {
			t.Errorf("CSP lacks %s", must)
		}
	}
	if strings.Contains(contentSecurityPolicy, "unsafe") {
		t.Error("CSP allows unsafe-*")
	}
	s := c.signedIn(c.reader)
	u, err := url.Parse(c.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range s.http.Jar.Cookies(u) {
		if ck.Name == cookieName && len(ck.Value) < 40 {
			t.Errorf("session id %q is short", ck.Value)
		}
	}
	resp, err = s.http.Get(c.base + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The cookie's attributes, as set at sign-in.
	b2 := c.newBrowser()
	b2.get("/ui/signin")
	req, err := http.NewRequest(http.MethodPost, c.base+"/ui/signin", strings.NewReader(url.Values{"token": {c.reader}, "pre": {b2.preValue()}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = b2.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var set string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, cookieName+"=") {
			set = v
		}
	}
	for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Expires="} {
		if !strings.Contains(set, attr) {
			t.Errorf("session cookie %q lacks %s", set, attr)
		}
	}
}

// TestSignInThrottledAndAudited: failed sign-ins are audited, and past
// the address's budget even the right token is refused for a while.
func TestSignInThrottledAndAudited(t *testing.T) {
	c := startC2(t, e4.SymKey)
	b := c.newBrowser()
	b.get("/ui/signin")
	for i := range signInBurst {
		code, _ := b.postRaw("/ui/signin", url.Values{"token": {fmt.Sprintf("e4c2_wrong%d", i)}, "pre": {b.preValue()}})
		if code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i, code)
		}
	}
	code, body := b.postRaw("/ui/signin", url.Values{"token": {c.admin}, "pre": {b.preValue()}})
	if code != http.StatusTooManyRequests {
		t.Fatalf("sign-in after %d failures: %d, want 429 (%s)", signInBurst, code, body)
	}
	recs, err := c.srv.Access().AuditLog(context.Background(), store.AuditFilter{Action: "SignIn", Outcome: "Unauthenticated"}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != signInBurst || !strings.HasPrefix(recs[0].Remote, "127.0.0.1") {
		t.Fatalf("audited failed sign-ins: %+v", recs)
	}
	// Another address is not slowed down (the budget is per address):
	// the same check from the failures' table.
	if c.gui.failures.blocked("192.0.2.1") || !c.gui.failures.blocked("127.0.0.1") {
		t.Fatal("the failure budget is not per address")
	}
}

// TestSignInLinkWorksOnce: the link "e4 dev" prints signs in once, and a
// GET of it only shows the form.
func TestSignInLinkWorksOnce(t *testing.T) {
	c := startC2(t, e4.SymKey)
	link, err := c.gui.SignInLink(context.Background(), c.base, c.admin)
	if err != nil {
		t.Fatal(err)
	}
	code := strings.TrimPrefix(link, c.base+"/ui/signin?code=")
	b := c.newBrowser()
	st, page := b.get(strings.TrimPrefix(link, c.base))
	if st != http.StatusOK || !strings.Contains(page, `name="code" value="`+code+`"`) || !strings.Contains(page, "data-autosubmit") {
		t.Fatalf("link page: %d %s", st, page)
	}
	if st, _ := b.get("/ui/"); st != http.StatusSeeOther {
		t.Fatal("the GET of the link signed in")
	}
	if st, _ := b.postRaw("/ui/signin", url.Values{"code": {code}, "pre": {b.preValue()}}); st != http.StatusSeeOther {
		t.Fatalf("code sign-in: %d", st)
	}
	if st, _ := b.get("/ui/tokens"); st != http.StatusOK {
		t.Fatalf("signed in by link, admin page: %d", st)
	}
	other := c.newBrowser()
	other.get("/ui/signin")
	if st, _ := other.postRaw("/ui/signin", url.Values{"code": {code}, "pre": {other.preValue()}}); st != http.StatusUnauthorized {
		t.Fatalf("second use of the code: %d, want 401", st)
	}
}

// TestRevokedTokenEndsSession: a session lasts only as long as its token.
func TestRevokedTokenEndsSession(t *testing.T) {
	c := startC2(t, e4.SymKey)
	reader, admin := c.signedIn(c.reader), c.signedIn(c.admin)
	if st, _ := reader.get("/ui/clients"); st != http.StatusOK {
		t.Fatal(st)
	}
	if st, _ := admin.post("/ui/tokens/revoke", url.Values{"name": {"viewer"}}); st != http.StatusSeeOther {
		t.Fatalf("revoke: %d", st)
	}
	if st, _ := reader.get("/ui/clients"); st != http.StatusSeeOther {
		t.Fatalf("session of a revoked token: %d, want a redirect to sign in", st)
	}
	// Revoked elsewhere (the API, another replica): the next request sees it.
	ops := c.signedIn(c.operator)
	if err := c.srv.Access().RevokeToken(context.Background(), c.adminCaller, "test", "ops"); err != nil {
		t.Fatal(err)
	}
	if st, _ := ops.get("/ui/"); st != http.StatusSeeOther {
		t.Fatalf("session of a token revoked through the API: %d", st)
	}
	if st, _ := admin.post("/ui/signout", nil); st != http.StatusSeeOther {
		t.Fatal("sign out")
	}
	if st, _ := admin.get("/ui/"); st != http.StatusSeeOther {
		t.Fatal("signed out, still in")
	}
}

const xss = `<script>alert(1)</script>`

// TestNamesAreEscaped: a client and a topic named like a script are shown
// as text everywhere.
func TestNamesAreEscaped(t *testing.T) {
	c := startC2(t, e4.SymKey)
	admin := c.signedIn(c.admin)
	st, page := admin.post("/ui/clients", url.Values{"name": {xss}})
	if st != http.StatusOK || !strings.Contains(page, "one-time-key") {
		t.Fatalf("add client: %d %s", st, page)
	}
	if st, page := admin.post("/ui/topics", url.Values{"name": {"plant/" + xss}}); st != http.StatusSeeOther {
		t.Fatalf("add topic: %d %s", st, page)
	}
	id := e4.IDFromName(xss)
	if st, _ := admin.post("/ui/topic/members", url.Values{"name": {"plant/" + xss}, "client": {xss}}); st != http.StatusSeeOther {
		t.Fatal("add member")
	}
	pages := []string{"/ui/", "/ui/clients", "/ui/clients?q=" + url.QueryEscape(xss), "/ui/client?id=" + id.String(), "/ui/topics",
		"/ui/topic?name=" + url.QueryEscape("plant/"+xss), "/ui/audit", "/ui/audit?target=" + url.QueryEscape(xss)}
	for _, p := range pages {
		st, body := admin.get(p)
		if st != http.StatusOK {
			t.Errorf("%s: %d", p, st)
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s shows the name unescaped", p)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") && p != "/ui/" {
			t.Errorf("%s does not show the name escaped", p)
		}
	}
}

// keyEncodings are the ways a key could leak into a page.
func keyEncodings(k []byte) []string {
	return []string{hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)), base64.StdEncoding.EncodeToString(k),
		base64.RawStdEncoding.EncodeToString(k), base64.URLEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), string(k)}
}

var oneTimeKeyRE = regexp.MustCompile(`id="one-time-key">([0-9a-f]+)<`)

// TestNoKeyMaterialInPages: crawling every page with an admin session
// finds no client key, topic key, master key or token secret in any
// encoding; a generated client key appears once, in the answer to the
// request that made it.
func TestNoKeyMaterialInPages(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	admin := c.signedIn(c.admin)
	var secrets [][]byte
	var clientIDs []e4.ID
	for _, name := range []string{"alpha", "beta"} {
		st, page := admin.post("/ui/clients", url.Values{"name": {name}})
		m := oneTimeKeyRE.FindStringSubmatch(page)
		if st != http.StatusOK || m == nil {
			t.Fatalf("add %s: %d", name, st)
		}
		k, err := hex.DecodeString(m[1])
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, k)
		clientIDs = append(clientIDs, e4.IDFromName(name))
	}
	// A re-key shows the new key once too.
	st, page := admin.post("/ui/client/rekey", url.Values{"id": {clientIDs[0].String()}})
	m := oneTimeKeyRE.FindStringSubmatch(page)
	if st != http.StatusOK || m == nil {
		t.Fatalf("rekey: %d", st)
	}
	k, err := hex.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, k)
	for _, topic := range []string{"plant/a", "plant/b"} {
		admin.post("/ui/topics", url.Values{"name": {topic}})
		for _, id := range clientIDs {
			admin.post("/ui/topic/members", url.Values{"name": {topic}, "client": {id.String()}})
		}
		admin.post("/ui/topic/rotate", url.Values{"name": {topic}})
		keys, err := c.svc.MonitorTopicKeys(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, keys.Current, keys.Previous)
	}
	secrets = append(secrets, c.master, []byte(c.admin), []byte(c.operator), []byte(c.reader))
	// An import with generated keys: their one download is the only place.
	job := importCSV(t, admin, "name\nimp-1\nimp-2\n")
	waitImport(t, admin, job)
	st, download := admin.post("/ui/imports/"+job+"/keys", nil)
	if st != http.StatusOK || strings.Count(download, "\n") != 3 {
		t.Fatalf("keys download: %d %q", st, download)
	}
	for _, line := range strings.Split(strings.TrimSpace(download), "\n")[1:] {
		_, keyHex, _ := strings.Cut(line, ",")
		k, err := hex.DecodeString(keyHex)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, k)
	}
	if st, _ := admin.post("/ui/imports/"+job+"/keys", nil); st == http.StatusOK {
		t.Fatal("the generated keys could be downloaded twice")
	}
	pages := []string{"/ui/", "/ui/clients", "/ui/topics", "/ui/pk", "/ui/monitor", "/ui/policies", "/ui/rotations", "/ui/rotations?within=1w", "/ui/audit", "/ui/tokens",
		"/ui/imports/" + job, "/ui/imports/" + job + "/status", "/ui/topic?name=plant%2Fa", "/ui/topic?name=plant%2Fb", "/ui/clients?q=imp-1"}
	for _, id := range append(clientIDs, e4.IDFromName("imp-1")) {
		pages = append(pages, "/ui/client?id="+id.String())
	}
	for _, p := range pages {
		st, body := admin.get(p)
		if st != http.StatusOK {
			t.Errorf("%s: %d", p, st)
		}
		for i, s := range secrets {
			if len(s) == 0 {
				continue
			}
			for _, enc := range keyEncodings(s) {
				if bytes.Contains([]byte(body), []byte(enc)) {
					t.Errorf("%s holds secret %d (%d bytes)", p, i, len(s))
				}
			}
		}
	}
}

// importCSV uploads a CSV through the import form and returns the job id.
func importCSV(t *testing.T, b *browser, data string) string {
	t.Helper()
	var body bytes.Buffer
	w := newMultipart(&body)
	w.field("csrf", b.csrf)
	w.field("format", "csv")
	w.file("file", "clients.csv", data)
	ct := w.close()
	req, err := http.NewRequest(http.MethodPost, b.c.base+"/ui/clients/import", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/imports/") {
		t.Fatalf("import: %d %s", resp.StatusCode, loc)
	}
	return strings.TrimPrefix(loc, "/ui/imports/")
}

// waitImport polls the job's status until it finished.
func waitImport(t *testing.T, b *browser, job string) {
	t.Helper()
	for range 500 {
		_, st := b.get("/ui/imports/" + job + "/status")
		if strings.Contains(st, `"finished":true`) {
			if strings.Contains(st, `"error"`) {
				t.Fatalf("import failed: %s", st)
			}
			return
		}
		waitABit()
	}
	t.Fatal("the import did not finish")
}

// TestStaticFiles: the assets are served without a session, with their
// types, and the folder is not listed.
func TestStaticFiles(t *testing.T) {
	c := startC2(t, e4.SymKey)
	b := c.newBrowser()
	for path, ctype := range map[string]string{"/ui/static/ui.js": "text/javascript", "/ui/static/ui.css": "text/css", "/ui/static/favicon.svg": "image/svg+xml"} {
		resp, err := b.http.Get(c.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if st, _ := b.get("/ui/static/"); st != http.StatusNotFound {
		t.Errorf("the static folder is listed: %d", st)
	}
}

// TestSessionRateLimited: a session's requests take from its token's
// rate budget, the one its API calls take from.
func TestSessionRateLimited(t *testing.T) {
	c := startC2(t, e4.SymKey) // RatePerSecond -1: no limit
	b := c.signedIn(c.reader)
	for range 50 {
		if st, _ := b.get("/ui/policies"); st != http.StatusOK {
			t.Fatalf("unlimited: %d", st)
		}
	}
	limited := startC2(t, e4.SymKey, func(cfg *api.Config) { cfg.RatePerSecond, cfg.Burst = 0.001, 10 })
	b = limited.signedIn(limited.reader)
	codes := map[int]int{}
	for range 20 {
		st, _ := b.get("/ui/policies")
		codes[st]++
	}
	if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusOK] == 0 {
		t.Fatalf("statuses %v: want some 200 then 429", codes)
	}
}
