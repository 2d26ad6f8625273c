package web

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/bootstrap"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// testC2 is a real C2 for the interface's tests: SQLite, a Mosquitto
// broker, the monitor, the API server with the interface mounted, and
// tokens of each role.
type testC2 struct {
	t         testing.TB
	svc       *c2.Service
	st        store.Store
	hub       *api.EventHub
	srv       *api.Server
	gui       *Handler
	tr        transport.Transport
	brokerURL string
	base      string // https://host:port
	master    []byte
	// Tokens of each role.
	admin, operator, reader string
	adminCaller             api.Caller
}

func startC2(t testing.TB, mode e4.Mode, edits ...func(*api.Config)) *testC2 {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c := &testC2{t: t}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "c2.db"))
	if err != nil {
		t.Fatal(err)
	}
	c.st = st
	t.Cleanup(func() { st.Close() })
	c.master, _ = seal.GenerateKey()
	keys, err := seal.NewKeyring(c.master)
	if err != nil {
		t.Fatal(err)
	}
	broker := testbroker.StartMosquitto(t, nil)
	c.brokerURL = broker.URL()
	c.tr, err = mqtt.Dial(ctx, mqtt.Config{Brokers: []string{c.brokerURL}, ClientID: "c2-web-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.tr.Close() })
	c.hub = api.NewEventHub(0)
	var mon *monitor.Monitor
	c.svc, err = c2.New(ctx, c2.Config{Mode: mode, Store: st, Keyring: keys, Transport: c.tr, OnEvent: func(e c2.Event) {
		c.hub.Publish(e)
		if mon != nil {
			mon.Notify(e)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if mon, err = monitor.New(monitor.Config{Service: c.svc, Transport: c.tr, Filters: []string{"plant/#"}}); err != nil {
		t.Fatal(err)
	}
	c.svc.SetMonitor(mon)
	certFile, keyFile, err := bootstrap.EnsureSelfSigned(filepath.Join(dir, "tls"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := api.ServerTLS{CertFile: certFile, KeyFile: keyFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "admin.token")
	if _, err := bootstrap.AdminToken(ctx, st, tokenFile); err != nil {
		t.Fatal(err)
	}
	if c.admin, err = bootstrap.ReadTokenFile(tokenFile); err != nil {
		t.Fatal(err)
	}
	acfg := api.Config{Service: c.svc, Store: st, Events: c.hub, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		TLS: tlsCfg, Logger: slog.New(slog.DiscardHandler), Version: "test", RatePerSecond: -1}
	for _, edit := range edits {
		edit(&acfg)
	}
	c.srv, err = api.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.gui, err = New(Config{Service: c.svc, Access: c.srv.Access(), Events: c.hub}); err != nil {
		t.Fatal(err)
	}
	c.srv.Mount(Prefix, c.gui)
	runCtx, cancel := context.WithCancel(ctx)
	context.AfterFunc(runCtx, c.gui.Close)
	done := make(chan error, 3)
	go func() { done <- c.svc.Run(runCtx) }()
	go func() { done <- c.srv.Run(runCtx) }()
	go func() { done <- mon.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Errorf("stopped with %v", err)
			}
		}
	})
	select {
	case <-c.srv.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	}
	<-mon.Ready()
	c.base = "https://" + c.srv.HTTPAddr()
	if c.adminCaller, err = c.srv.Access().Check(ctx, c.admin); err != nil {
		t.Fatal(err)
	}
	c.operator = c.token("ops", "operate")
	c.reader = c.token("viewer", "read")
	return c
}

// token creates a token of a scope and returns its secret.
func (c *testC2) token(name, scope string) string {
	c.t.Helper()
	secret, _, err := c.srv.Access().CreateToken(context.Background(), c.adminCaller, "test", name, scope, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return secret
}

// browser is an HTTP client with a cookie jar: a browser without
// JavaScript, for the route tests.
type browser struct {
	t    testing.TB
	c    *testC2
	http *http.Client
	csrf string
}

func (c *testC2) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: c.t, c: c, http: &http.Client{
		Jar:       jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the test's self-signed certificate
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 30 * time.Second,
	}}
}

// signedIn returns a browser signed in with token.
func (c *testC2) signedIn(token string) *browser {
	c.t.Helper()
	b := c.newBrowser()
	code, _ := b.get("/ui/signin")
	if code != http.StatusOK {
		c.t.Fatalf("sign-in page: %d", code)
	}
	code, body := b.postRaw("/ui/signin", url.Values{"token": {token}, "pre": {b.preValue()}})
	if code != http.StatusSeeOther {
		c.t.Fatalf("sign-in: %d %s", code, body)
	}
	_, page := b.get("/ui/")
	b.csrf = findCSRF(page)
	if b.csrf == "" {
		c.t.Fatalf("no CSRF token on the dashboard: %s", page)
	}
	return b
}

// preValue is the sign-in form's pre-session cookie.
func (b *browser) preValue() string {
	u, _ := url.Parse(b.c.base + "/")
	for _, ck := range b.http.Jar.Cookies(u) {
		if ck.Name == preCookie {
			return ck.Value
		}
	}
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func findCSRF(page string) string {
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1]
}

func (b *browser) do(req *http.Request) (int, string) {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.c.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form with the session's CSRF token.
func (b *browser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", b.csrf)
	return b.postRaw(path, form)
}

func (b *browser) postRaw(path string, form url.Values) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}
