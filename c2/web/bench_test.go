package web

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/bootstrap"
)

var benchFleet = flag.Int("bench.fleet", 1_000_000, "clients in the database of BenchmarkClientListPage")

// BenchmarkClientListPage renders the client list server-side (the
// handler, without network or browser) on a SQLite database of
// -bench.fleet clients (a million by default), built with the store's
// bulk insert: the first page, a page deep in the keyset, a search by
// name and by id prefix, and the dashboard's counts for comparison.
//
//	go test -run '^$' -bench BenchmarkClientListPage -benchtime 200x ./c2/web/
func BenchmarkClientListPage(b *testing.B) {
	h, sessionID := fleetHandler(b, *benchFleet)
	mid := e4.IDFromName(fmt.Sprintf("sensor-%07d", *benchFleet/2)).String()
	pages := []struct{ name, path string }{
		{"first", "/ui/clients"},
		{"deep", "/ui/clients?after=" + mid},
		{"name", "/ui/clients?q=sensor-0000042"},
		{"prefix", "/ui/clients?q=" + mid[:5]},
		{"dashboard", "/ui/"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				render(b, h, sessionID, p.path)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
		})
	}
}

// render serves one GET as a signed-in browser would send it.
func render(tb testing.TB, h *Handler, sessionID, path string) string {
	req := httptest.NewRequest(http.MethodGet, "https://c2.test"+path, nil)
	req.AddCookie(&http.Cookie{Name: cookieName, Value: sessionID})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// fleetHandler builds a database of n clients and an interface over it
// with an admin session.
func fleetHandler(tb testing.TB, n int) (*Handler, string) {
	h, sid, _ := fleetHandlerStore(tb, n)
	return h, sid
}

// fleetHandlerStore is fleetHandler, also returning the store.
func fleetHandlerStore(tb testing.TB, n int) (*Handler, string, store.Store) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "c2.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	master, _ := seal.GenerateKey()
	keys, _ := seal.NewKeyring(master)
	svc, err := c2.New(ctx, c2.Config{Mode: e4.SymKey, Store: st, Keyring: keys})
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	if err := bulkClients(ctx, st, keys, n); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("built a database of %d clients in %v", n, time.Since(start).Round(time.Millisecond))
	hub := api.NewEventHub(0)
	if _, err := bootstrap.AdminToken(ctx, st, filepath.Join(tb.TempDir(), "admin.token")); err != nil {
		tb.Fatal(err)
	}
	srv, err := api.New(api.Config{Service: svc, Store: st, Events: hub, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Plaintext: true,
		RatePerSecond: -1}) // the benchmarks measure rendering, not the rate limit
	if err != nil {
		tb.Fatal(err)
	}
	h, err := New(Config{Service: svc, Access: srv.Access(), Events: hub})
	if err != nil {
		tb.Fatal(err)
	}
	secret, _, err := srv.Access().CreateToken(ctx, api.Caller{Actor: "bench"}, "bench", "bench", "read", 0)
	if err != nil {
		tb.Fatal(err)
	}
	caller, err := srv.Access().Check(ctx, secret)
	if err != nil {
		tb.Fatal(err)
	}
	s, _ := h.sessions.create(caller)
	return h, s.id, st
}

// bulkClients inserts n named clients, 10,000 per transaction. They share
// one sealed key: the list never opens it, and sealing a million keys
// would only slow the set-up.
func bulkClients(ctx context.Context, st store.Store, keys *seal.Keyring, n int) error {
	sealed, err := keys.Seal(make([]byte, e4.KeyLen), "bench")
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for from := 0; from < n; from += c2.ImportChunk {
		chunk := make([]store.Client, 0, c2.ImportChunk)
		for i := from; i < min(n, from+c2.ImportChunk); i++ {
			name := fmt.Sprintf("sensor-%07d", i)
			chunk = append(chunk, store.Client{ID: e4.IDFromName(name), Name: name, SealedKey: sealed, CreatedAt: now})
		}
		if err := st.Update(ctx, func(tx store.Tx) error { return tx.InsertClients(chunk) }); err != nil {
			return err
		}
	}
	return nil
}

// TestClientListPages checks, on a small fleet, what the benchmark
// measures: pages of 50 by keyset, the next link, search by name and id
// prefix.
func TestClientListPages(t *testing.T) {
	h, sid := fleetHandler(t, 2000)
	first := render(t, h, sid, "/ui/clients")
	if n := strings.Count(first, `<tr><td><a href="/ui/client?id=`); n != pageSize {
		t.Fatalf("first page has %d rows", n)
	}
	next := regexpNext.FindStringSubmatch(first)
	if next == nil {
		t.Fatal("no next link")
	}
	second := render(t, h, sid, strings.ReplaceAll(next[1], "&amp;", "&"))
	if strings.Count(second, `<tr><td><a href="/ui/client?id=`) != pageSize || second == first {
		t.Fatal("second page")
	}
	id := e4.IDFromName("sensor-0001234").String()
	if page := render(t, h, sid, "/ui/clients?q=sensor-0001234"); !strings.Contains(page, id) {
		t.Error("search by name")
	}
	page := render(t, h, sid, "/ui/clients?q="+id[:4])
	if !strings.Contains(page, id) {
		t.Error("search by id prefix")
	}
	// Every row of a prefix search has the prefix.
	for _, m := range regexpRowID.FindAllStringSubmatch(page, -1) {
		if !strings.HasPrefix(m[1], id[:4]) {
			t.Errorf("prefix %s listed %s", id[:4], m[1])
		}
	}
	// A one-digit prefix spans pages: following the next links lists each
	// client with it once.
	want := 0
	for i := range 2000 {
		if strings.HasPrefix(e4.IDFromName(fmt.Sprintf("sensor-%07d", i)).String(), "a") {
			want++
		}
	}
	seen := map[string]bool{}
	path, pages := "/ui/clients?q=a", 0
	for path != "" && pages < 100 {
		page := render(t, h, sid, path)
		pages++
		for _, m := range regexpRowID.FindAllStringSubmatch(page, -1) {
			if seen[m[1]] || !strings.HasPrefix(m[1], "a") {
				t.Fatalf("row %s listed twice or without the prefix", m[1])
			}
			seen[m[1]] = true
		}
		path = ""
		if next := regexpNext.FindStringSubmatch(page); next != nil {
			path = strings.ReplaceAll(next[1], "&amp;", "&")
		}
	}
	if len(seen) != want || pages < 2 {
		t.Fatalf("prefix a: %d clients in %d pages, want %d", len(seen), pages, want)
	}
}

var (
	regexpNext  = regexp.MustCompile(`href="([^"]+)" id="next-page"`)
	regexpRowID = regexp.MustCompile(`<tr><td><a href="/ui/client\?id=([0-9a-f]{32})">`)
)
