package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/bootstrap"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/internal/testutil"
	"github.com/e4-iot/e4kit/transport/mqtt"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

// testC2 is a C2 with its API on free loopback ports: SQLite, the
// embedded MQTT broker, a self-signed certificate, and an admin token.
type testC2 struct {
	t        testing.TB
	dir      string
	dbPath   string
	svc      *c2.Service
	st       store.Store
	hub      *api.EventHub
	srv      *api.Server
	admin    string // the bootstrap admin token
	caFile   string
	clientTL *tls.Config
	logs     *testutil.Buffer
	stop     func() error
	// brokerURL is the embedded MQTT broker's, for test devices.
	brokerURL string
}

// options tune newTestC2.
type options struct {
	mode e4.Mode
	// postgres runs the store on a fresh PostgreSQL database instead
	// of SQLite.
	postgres  bool
	edit      func(*api.Config)
	noBroker  bool
	serverTLS func(certFile, keyFile string) *tls.Config
	// service edits the service's configuration (its dispatcher).
	service func(*c2.Config)
}

func newTestC2(t testing.TB, o options) *testC2 {
	t.Helper()
	if o.mode == 0 {
		o.mode = e4.SymKey
	}
	ctx := context.Background()
	c := &testC2{t: t, dir: t.TempDir(), logs: &testutil.Buffer{}}
	c.dbPath = filepath.Join(c.dir, "c2.db")
	var (
		st  store.Store
		err error
	)
	if o.postgres {
		st, err = postgres.Open(ctx, testbroker.StartPostgres(t, nil).NewDatabase(t))
	} else {
		st, err = sqlite.Open(ctx, c.dbPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.st = st
	t.Cleanup(func() { st.Close() })
	master, _ := seal.GenerateKey()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c2.Config{Mode: o.mode, Store: st, Keyring: keys}
	if !o.noBroker {
		broker, err := mqttbroker.Start("127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { broker.Close() })
		c.brokerURL = broker.URL()
		tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{broker.URL()}, ClientID: "c2-under-test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		cfg.Transport = tr
	}
	c.hub = api.NewEventHub(0)
	cfg.OnEvent = c.hub.Publish
	if o.service != nil {
		o.service(&cfg)
	}
	if c.svc, err = c2.New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := bootstrap.EnsureSelfSigned(filepath.Join(c.dir, "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.caFile = certFile
	var serverTLS *tls.Config
	if o.serverTLS != nil {
		serverTLS = o.serverTLS(certFile, keyFile)
	} else if serverTLS, err = (api.ServerTLS{CertFile: certFile, KeyFile: keyFile}).Config(); err != nil {
		t.Fatal(err)
	}
	if c.clientTL, err = api.ClientTLS(certFile, "", "", ""); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(c.dir, "admin.token")
	if created, err := bootstrap.AdminToken(ctx, st, tokenFile); err != nil || !created {
		t.Fatalf("bootstrap.AdminToken: created %v, %v", created, err)
	}
	if c.admin, err = bootstrap.ReadTokenFile(tokenFile); err != nil {
		t.Fatal(err)
	}
	acfg := api.Config{
		Service: c.svc, Store: st, Events: c.hub, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", TLS: serverTLS,
		Logger: slog.New(slog.NewJSONHandler(c.logs, nil)), Version: "test",
	}
	if o.edit != nil {
		o.edit(&acfg)
	}
	if c.srv, err = api.New(acfg); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() { svcDone <- c.svc.Run(runCtx) }()
	done := make(chan error, 1)
	go func() { done <- c.srv.Run(runCtx) }()
	select {
	case <-c.srv.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	}
	var once sync.Once
	var stopErr error
	c.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			<-svcDone
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	return c
}

// conn opens a gRPC connection trusting the test certificate.
func (c *testC2) conn(extra ...grpc.DialOption) *grpc.ClientConn {
	c.t.Helper()
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c.clientTL))}, extra...)
	cc, err := grpc.NewClient(c.srv.GRPCAddr(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// client returns a C2 client on a fresh connection.
func (c *testC2) client() c2pb.C2Client { return c2pb.NewC2Client(c.conn()) }

// as returns a context that presents token.
func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// token creates a token of scope and returns its secret.
func (c *testC2) token(name, scope string) string {
	c.t.Helper()
	res, err := c.client().CreateToken(as(c.admin), &c2pb.CreateTokenRequest{Name: name, Scope: scope})
	if err != nil {
		c.t.Fatalf("CreateToken %s: %v", name, err)
	}
	return res.Secret
}

// wantCode fails unless err has code.
func wantCode(t testing.TB, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
}

// httpClient trusts the test certificate.
func (c *testC2) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c.clientTL}, Timeout: 30 * time.Second}
}

// httpResult is an HTTP answer with its decoded JSON body (numbers as
// json.Number).
type httpResult struct {
	status int
	body   []byte
	json   map[string]any
}

// do sends an HTTP request with an optional token and JSON body.
func (c *testC2) do(method, path, token string, body any) httpResult {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "https://"+c.srv.HTTPAddr()+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	r := httpResult{status: resp.StatusCode, body: data}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers stay json.Number, strings string: tests see which the API sent
	_ = dec.Decode(&r.json)
	return r
}

// wantStatus fails unless r has the HTTP status.
func wantStatus(t testing.TB, what string, r httpResult, code int) {
	t.Helper()
	if r.status != code {
		t.Fatalf("%s: HTTP %d %s, want %d", what, r.status, r.body, code)
	}
}

// auditRecords reads the whole audit log through the store.
func (c *testC2) auditRecords() []store.AuditRecord {
	c.t.Helper()
	var out []store.AuditRecord
	err := c.st.View(context.Background(), func(tx store.Tx) (err error) {
		out, err = tx.(store.AccessTx).ListAudit(store.AuditFilter{}, 0, 100000)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}
