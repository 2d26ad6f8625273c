package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/internal/testutil"
)

// TestRateLimit: each token has its own budget; past it calls get
// ResourceExhausted (429 over HTTP), other tokens are not slowed.
func TestRateLimit(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.RatePerSecond, cfg.Burst = 0.001, 5 }})
	// Creating the token used one call of the admin's budget.
	reader := c.token("reader", "read")
	cl := c.client()
	for i := range 5 {
		if _, err := cl.ListTopics(as(reader), &c2pb.ListTopicsRequest{}); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	_, err := cl.ListTopics(as(reader), &c2pb.ListTopicsRequest{})
	wantCode(t, "call past the burst", err, codes.ResourceExhausted)
	wantStatus(t, "HTTP call past the burst", c.do("GET", "/v1/topics", reader, nil), http.StatusTooManyRequests)
	if _, err := cl.ListTopics(as(c.admin), &c2pb.ListTopicsRequest{}); err != nil {
		t.Fatalf("another token was slowed down: %v", err)
	}
}

// TestGRPCMessageLimit: a message over MaxRequestBytes is refused by
// gRPC itself.
func TestGRPCMessageLimit(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.MaxRequestBytes = 4096 }})
	stream, err := c.client().ImportClients(as(c.admin), &c2pb.ImportClientsRequest{Format: "csv", Data: make([]byte, 8192)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "oversized message", err, codes.ResourceExhausted)
}

// TestMutualTLS: with a client CA, a connection without a certificate is
// refused; a certificate mapped to a scope authenticates without a token
// (over gRPC and HTTP) and is named in the audit log; an unmapped one
// still needs a token.
func TestMutualTLS(t *testing.T) {
	ca := testutil.NewTestPKI(t)
	c := newTestC2(t, options{
		serverTLS: func(certFile, keyFile string) *tls.Config {
			cfg, err := api.ServerTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.CAFile}.Config()
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		},
		edit: func(cfg *api.Config) { cfg.CertScopes = map[string]api.Scope{"robot": api.ScopeOperate} },
	})
	withCert := func(cn string) *tls.Config {
		cfg := c.clientTL.Clone()
		if cn != "" {
			cfg.Certificates = []tls.Certificate{ca.IssueClient(t, pkix.Name{CommonName: cn, Organization: []string{"ops"}})}
		}
		return cfg
	}
	dial := func(cfg *tls.Config) c2pb.C2Client {
		conn, err := grpc.NewClient(c.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return c2pb.NewC2Client(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dial(withCert("")).ListTopics(as(c.admin), &c2pb.ListTopicsRequest{})
	wantCode(t, "no client certificate", err, codes.Unavailable)

	robot := dial(withCert("robot"))
	if _, err := robot.AddTopic(ctx, &c2pb.AddTopicRequest{Topic: "by/robot"}); err != nil {
		t.Fatalf("certificate-only call: %v", err)
	}
	_, err = robot.CreateToken(ctx, &c2pb.CreateTokenRequest{Name: "x", Scope: "read"})
	wantCode(t, "certificate outside its scope", err, codes.PermissionDenied)
	_, err = dial(withCert("stranger")).ListTopics(ctx, &c2pb.ListTopicsRequest{})
	wantCode(t, "unmapped certificate without a token", err, codes.Unauthenticated)

	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: withCert("robot")}}
	resp, err := httpClient.Post("https://"+c.srv.HTTPAddr()+"/v1/topics", "application/json", strings.NewReader(`{"topic":"by/robot/http"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP certificate-only call: %d", resp.StatusCode)
	}
	recs := findAudit(c.auditRecords(), "AddTopic")
	if len(recs) != 2 || !strings.HasPrefix(recs[0].Actor, "cert:CN=robot") || !strings.HasPrefix(recs[1].Actor, "cert:CN=robot") {
		t.Fatalf("audit actors of certificate calls: %+v", recs)
	}
}

// TestGracefulShutdown: stopping the server ends open event streams (gRPC
// and SSE) and returns nil. The forced-stop timeout is an hour, so a
// graceful stop that waited for the streams would hang the test.
func TestGracefulShutdown(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.ShutdownTimeout = time.Hour }})
	reader := c.token("reader", "read")
	stream, err := c.client().WatchEvents(as(reader), &c2pb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath, nil)
	req.Header.Set("Authorization", "Bearer "+reader)
	client := c.httpClient()
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %v %v", resp, err)
	}
	defer resp.Body.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- c.stop() }()
	_, err = stream.Recv()
	wantCode(t, "event stream at shutdown", err, codes.Unavailable)
	if _, err := readAll(resp); err != nil {
		t.Logf("SSE body ended with %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run returned %v", err)
	}
}

func readAll(resp *http.Response) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}
