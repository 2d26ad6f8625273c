package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/e4-iot/e4kit/internal/testbroker"
)

// httpGet answers the status and body of a GET on url, with token when
// not empty; client may be nil for plain HTTP.
func httpGet(t *testing.T, client *http.Client, url, token string) (int, string) {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitGet waits until a GET on url answers code.
func waitGet(t *testing.T, client *http.Client, url string, code int) {
	t.Helper()
	deadline := time.Now().Add(clientTimeout)
	for {
		got, body := httpGet(t, client, url, "")
		if got == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q, want %d", url, got, body, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiClient trusts the development certificate of s.
func (s *c2Server) apiClient(t *testing.T) (*http.Client, *tls.Config) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.dir, "data", "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in cert.pem")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, cfg
}

func (s *c2Server) adminToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestC2ServeMetricsScrapedByPrometheus: a real Prometheus server scrapes
// "e4 c2 serve --metrics-addr" and reads back, through its query API, the
// commands C2 sent after "e4 c2 member add" and the API call that caused
// them, and evaluates every shipped alert rule on the live series without
// error. The probes answer without a token on both listeners; /metrics on
// the API listener needs one.
func TestC2ServeMetricsScrapedByPrometheus(t *testing.T) {
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	s := startC2Serve(t, "E4_C2_METRICS_ADDR="+metricsAddr)
	api, _ := s.apiClient(t)
	waitGet(t, nil, "http://"+metricsAddr+"/readyz", http.StatusOK)
	waitGet(t, api, "https://"+s.http+"/readyz", http.StatusOK)
	if code, body := httpGet(t, api, "https://"+s.http+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz on the API listener: %d %q", code, body)
	}
	if code, _ := httpGet(t, api, "https://"+s.http+"/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics on the API listener without a token: %d", code)
	}
	if code, body := httpGet(t, api, "https://"+s.http+"/metrics", s.adminToken(t)); code != http.StatusOK || !strings.Contains(body, "e4_c2_outbox_commands") {
		t.Fatalf("/metrics on the API listener with a token: %d", code)
	}

	rules, err := filepath.Abs(filepath.Join("..", "..", "deploy", "prometheus", "e4kit-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	prom := testbroker.StartPrometheus(t, testbroker.PrometheusOptions{Targets: []string{metricsAddr}, RuleFiles: []string{rules}})
	s.ok("client", "add", "pump-1")
	s.ok("topic", "add", "plant/line-1")
	s.ok("member", "add", "pump-1", "plant/line-1")

	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	for _, q := range []string{
		`up{job="e4kit"}`,
		`e4_c2_dispatch_commands_total{result="sent"}`,
		`e4_c2_events_total{kind="command_sent"}`,
		`e4_c2_api_requests_total{protocol="grpc",method="AddMember",code="OK"}`,
		`e4_c2_ready{check="broker"}`,
	} {
		waitQuery(t, ctx, prom, q)
	}
	waitRulesEvaluated(t, ctx, prom)
}

// waitRulesEvaluated waits until Prometheus evaluated every shipped rule
// against the live series, and fails on any evaluation error.
func waitRulesEvaluated(t *testing.T, ctx context.Context, prom *testbroker.Prometheus) {
	t.Helper()
	for {
		rules, err := prom.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		evaluated := len(rules) > 0
		for _, r := range rules {
			if r.Health == "err" {
				t.Fatalf("rule %s/%s: %s", r.Group, r.Name, r.LastError)
			}
			evaluated = evaluated && r.Health == "ok"
		}
		if evaluated {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("rules not all evaluated: %+v", rules)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitQuery waits until Prometheus answers expr with one sample of at
// least 1.
func waitQuery(t *testing.T, ctx context.Context, prom *testbroker.Prometheus, expr string) {
	t.Helper()
	for {
		samples, err := prom.Query(ctx, expr)
		if err != nil {
			t.Fatalf("%v\n%s", err, prom.Output())
		}
		if len(samples) == 1 && samples[0].Value >= 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus answers %s with %v\n%s", expr, samples, prom.Output())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestC2ServeHealthFollowsBroker: with Mosquitto stopped, /readyz answers
// 503 and the gRPC health service NOT_SERVING; both recover with the
// broker, and each change is logged once. At debug level the keys sent
// again are logged.
func TestC2ServeHealthFollowsBroker(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	s := startC2Serve(t, "E4_C2_TRANSPORT_URL="+m.URL(), "E4_C2_METRICS_ADDR="+metricsAddr,
		"E4_C2_METRICS_READY_INTERVAL=200ms", "E4_C2_C2_RESEND_EVERY=1s", "E4_C2_C2_REPAIR_INTERVAL=200ms", "E4_C2_LOG_LEVEL=debug")
	_, tlsCfg := s.apiClient(t)
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(clientTimeout)
		for {
			res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "e4kit.c2.v1.C2"})
			if err == nil && res.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gRPC health: %v %v, want %v\n%s", res, err, want, s.output)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	readyz := "http://" + metricsAddr + "/readyz"
	waitGet(t, nil, readyz, http.StatusOK)
	waitHealth(healthpb.HealthCheckResponse_SERVING)

	m.Stop()
	waitGet(t, nil, readyz, http.StatusServiceUnavailable)
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	s.ok("client", "add", "pump-1")
	s.ok("topic", "add", "plant/line-1")
	s.ok("member", "add", "pump-1", "plant/line-1")

	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitGet(t, nil, readyz, http.StatusOK)
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	// pump-1 never acknowledges: with resend_every its key goes again.
	waitResend(t, "http://"+metricsAddr+"/metrics")
	s.stop()
	out := s.output.String()
	if !strings.Contains(out, `"level":"DEBUG","msg":"current topic keys queued again"`) {
		t.Fatalf("the resent keys are not logged at debug level:\n%s", out)
	}
	for _, line := range []string{`"msg":"broker unavailable: not ready"`, `"msg":"broker available again"`} {
		if n := strings.Count(out, line); n != 1 {
			t.Fatalf("%s logged %d times, want once:\n%s", line, n, out)
		}
	}
}

// waitResend waits until the metrics at url count a key resent.
func waitResend(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(clientTimeout)
	for {
		_, body := httpGet(t, nil, url, "")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, `e4_c2_repair_commands_total{reason="resend"} `) && !strings.HasSuffix(line, " 0") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no key resent:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestC2ServeLogLevelFlag: --log-level reaches the logger; a level that
// does not exist stops the start with the choices.
func TestC2ServeLogLevelFlag(t *testing.T) {
	r := e4Run(t, "", "c2", "serve", "--data-dir", t.TempDir(), "--log-level", "chatty")
	if r.code == 0 || !strings.Contains(r.stderr, `log.level "chatty": want debug, info, warn or error`) {
		t.Fatalf("--log-level chatty: %+v", r)
	}
}
