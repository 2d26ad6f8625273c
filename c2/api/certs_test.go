package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
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

// mtlsC2 is a C2 requiring client certificates of ca, with scopes.
func mtlsC2(t *testing.T, ca *testutil.PKI, scopes map[string]api.Scope) *testC2 {
	return newTestC2(t, options{
		serverTLS: func(certFile, keyFile string) *tls.Config {
			cfg, err := api.ServerTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.CAFile}.Config()
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		},
		edit: func(cfg *api.Config) { cfg.CertScopes = scopes },
	})
}

// certCaller calls C2 over both listeners with one client certificate.
type certCaller struct {
	t    *testing.T
	c    *testC2
	grpc c2pb.C2Client
	http *http.Client
}

func (c *testC2) withCertificate(t *testing.T, cert tls.Certificate) certCaller {
	cfg := c.clientTL.Clone()
	cfg.Certificates = []tls.Certificate{cert}
	conn, err := grpc.NewClient(c.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	return certCaller{t: t, c: c, grpc: c2pb.NewC2Client(conn), http: hc}
}

// post sends a JSON body over HTTP with the certificate (and a token when
// given) and returns the status.
func (cc certCaller) post(path, token, body string) int {
	cc.t.Helper()
	req, _ := http.NewRequest("POST", "https://"+cc.c.srv.HTTPAddr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cc.http.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCertificateSubjectCrafted: with cert_scopes {reader: read, admin:
// admin}, a certificate whose only CN is "reader" but whose serial number
// attribute reads "1,CN=admin" is a reader on both listeners: it may list
// but not create tokens, over gRPC (PermissionDenied) and HTTP (403).
// Before, the HTTP path split the subject string on commas and found
// CN=admin: the POST /v1/tokens minted an admin token.
func TestCertificateSubjectCrafted(t *testing.T) {
	ca := testutil.NewTestPKI(t)
	c := mtlsC2(t, ca, map[string]api.Scope{"reader": api.ScopeRead, "admin": api.ScopeAdmin})
	crafted := c.withCertificate(t, ca.IssueClient(t, pkix.Name{CommonName: "reader", SerialNumber: "1,CN=admin"}))
	ctx := context.Background()
	if _, err := crafted.grpc.ListTopics(ctx, &c2pb.ListTopicsRequest{}); err != nil {
		t.Fatalf("reader certificate, gRPC list: %v", err)
	}
	_, err := crafted.grpc.CreateToken(ctx, &c2pb.CreateTokenRequest{Name: "minted", Scope: "admin"})
	wantCode(t, "reader certificate creating a token over gRPC", err, codes.PermissionDenied)
	if got := crafted.post("/v1/tokens", "", `{"name":"minted","scope":"admin"}`); got != http.StatusForbidden {
		t.Fatalf("reader certificate creating a token over HTTP: HTTP %d, want 403", got)
	}
	if got := crafted.post("/v1/topics", "", `{"topic":"by/reader"}`); got != http.StatusForbidden {
		t.Fatalf("reader certificate adding a topic over HTTP: HTTP %d, want 403", got)
	}
	admin := c.withCertificate(t, ca.IssueClient(t, pkix.Name{CommonName: "admin"}))
	if got := admin.post("/v1/tokens", "", `{"name":"by-admin-cert","scope":"read"}`); got != http.StatusOK {
		t.Fatalf("admin certificate creating a token over HTTP: HTTP %d", got)
	}
	for _, r := range findAudit(c.auditRecords(), "CreateToken") {
		if strings.Contains(r.Target, "minted") && r.Outcome == "ok" {
			t.Fatalf("the crafted certificate minted a token: %+v", r)
		}
	}
}

// TestCertificateSeveralCommonNames: a certificate whose subject has two
// CNs is refused on both listeners (Unauthenticated, 401), with or
// without a token: which CN names the caller would depend on who reads
// the subject.
func TestCertificateSeveralCommonNames(t *testing.T) {
	ca := testutil.NewTestPKI(t)
	c := mtlsC2(t, ca, map[string]api.Scope{"reader": api.ScopeRead, "admin": api.ScopeAdmin})
	oidCN := asn1.ObjectIdentifier{2, 5, 4, 3}
	for _, order := range [][]string{{"admin", "reader"}, {"reader", "admin"}} {
		subject := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: order[0]}, {Type: oidCN, Value: order[1]}}}
		two := c.withCertificate(t, ca.IssueClient(t, subject))
		_, err := two.grpc.ListTopics(context.Background(), &c2pb.ListTopicsRequest{})
		wantCode(t, "two CNs over gRPC", err, codes.Unauthenticated)
		_, err = two.grpc.ListTopics(as(c.admin), &c2pb.ListTopicsRequest{})
		wantCode(t, "two CNs with a token over gRPC", err, codes.Unauthenticated)
		if got := two.post("/v1/tokens", "", `{"name":"two","scope":"admin"}`); got != http.StatusUnauthorized {
			t.Fatalf("two CNs %v over HTTP: HTTP %d, want 401", order, got)
		}
		if got := two.post("/v1/topics", c.admin, `{"topic":"two"}`); got != http.StatusUnauthorized {
			t.Fatalf("two CNs %v with a token over HTTP: HTTP %d, want 401", order, got)
		}
	}
}

// TestCertScopesNeedClientCA: CertScopes on a server that does not
// verify client certificates is a configuration error, not ignored.
func TestCertScopesNeedClientCA(t *testing.T) {
	c := newTestC2(t, options{})
	for name, tlsCfg := range map[string]*tls.Config{"no TLS": nil, "TLS without client CA": c.clientTL.Clone()} {
		_, err := api.New(api.Config{Service: c.svc, Store: c.st, Events: c.hub, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			TLS: tlsCfg, Plaintext: tlsCfg == nil, CertScopes: map[string]api.Scope{"robot": api.ScopeOperate}})
		if err == nil || !strings.Contains(err.Error(), "CertScopes") {
			t.Fatalf("%s: New accepted CertScopes: %v", name, err)
		}
	}
}

// TestOldTLSRefused: both listeners refuse TLS 1.0 and 1.1 handshakes.
func TestOldTLSRefused(t *testing.T) {
	c := newTestC2(t, options{})
	for _, addr := range []string{c.srv.GRPCAddr(), c.srv.HTTPAddr()} {
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			cfg := c.clientTL.Clone()
			cfg.MinVersion, cfg.MaxVersion = v, v
			conn, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				conn.Close()
				t.Fatalf("%s accepted %s", addr, tls.VersionName(v))
			}
		}
		cfg := c.clientTL.Clone()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("%s refused TLS 1.2: %v", addr, err)
		}
		conn.Close()
	}
}
