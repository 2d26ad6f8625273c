package metrics_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/metrics"
	"github.com/e4-iot/e4kit/internal/bootstrap"
)

// apiUnderTest is a C2 API server instrumented as "e4 c2 serve" does it.
type apiUnderTest struct {
	srv   *api.Server
	token string
	conn  *grpc.ClientConn
}

func startAPI(t *testing.T, h *harness) *apiUnderTest {
	t.Helper()
	ctx := context.Background()
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if _, err := bootstrap.AdminToken(ctx, h.st, tokenFile); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	a := metrics.NewAPI()
	if err := h.reg.Register(a); err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{
		Service: h.svc, Store: h.st, Events: api.NewEventHub(0), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Plaintext: true,
		Instrumentation:     a.Instrumentation(),
		PublicRoutes:        map[string]http.Handler{metrics.HealthzPath: metrics.Healthz()},
		AuthenticatedRoutes: map[string]http.Handler{metrics.MetricsPath: h.reg.Handler()},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &apiUnderTest{srv: srv, token: strings.TrimSpace(string(token)), conn: conn}
}

// get makes an HTTP GET, with the token when withToken, and returns the
// status and body.
func (a *apiUnderTest) get(t *testing.T, path string, withToken bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+a.srv.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if withToken {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAPIMetricsCarryCodes: each API request is counted under its
// protocol, its method (a gRPC method, an HTTP route pattern, never the
// caller's values) and the code the caller got, refusals included;
// /healthz needs no token, /metrics on the API listener does.
func TestAPIMetricsCarryCodes(t *testing.T) {
	h := newHarness(t, "", nil)
	a := startAPI(t, h)
	reg := h.reg.Prometheus()
	if _, found := value(t, reg, "e4_c2_broker_connected", nil); found {
		t.Fatal("a C2 without a broker reports a broker connection state")
	}

	if code, body := a.get(t, "/healthz", false); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz without a token: %d %q", code, body)
	}
	if code, _ := a.get(t, "/metrics", false); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token on the API listener: %d", code)
	}
	if code, _ := a.get(t, "/v1/topics/secret-plant/line-7", true); code != http.StatusNotFound {
		t.Fatalf("an unknown topic: %d", code)
	}
	if code, _ := a.get(t, "/no/such/route", true); code != http.StatusNotFound {
		t.Fatalf("an unknown route: %d", code)
	}

	client := c2pb.NewC2Client(a.conn)
	_, err := client.ListTopics(context.Background(), &c2pb.ListTopicsRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ListTopics without a token: %v", err)
	}
	authed := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+a.token)
	if _, err := client.ListTopics(authed, &c2pb.ListTopicsRequest{}); err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	// A method name the caller made up is not a label.
	err = a.conn.Invoke(context.Background(), "/e4kit.c2.v1.C2/secret-plant", &c2pb.ListTopicsRequest{}, &c2pb.ListTopicsResponse{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a made-up method without a token: %v", err)
	}

	code, body := a.get(t, "/metrics", true)
	if code != http.StatusOK {
		t.Fatalf("/metrics with a token: %d", code)
	}
	for _, want := range []struct {
		protocol, method, code string
	}{
		{"http", "GET /healthz", "200"},
		{"http", "GET /metrics", "401"},
		{"http", "GET /v1/topics/{topic=**}", "404"},
		{"http", "other", "404"},
		{"grpc", "ListTopics", "Unauthenticated"},
		{"grpc", "ListTopics", "OK"},
		{"grpc", "other", "Unauthenticated"},
	} {
		labels := map[string]string{"protocol": want.protocol, "method": want.method, "code": want.code}
		if v, _ := value(t, reg, "e4_c2_api_requests_total", labels); v != 1 {
			t.Errorf("e4_c2_api_requests_total%v = %v, want 1", labels, v)
		}
		if !strings.Contains(body, `method="`+want.method+`"`) {
			t.Errorf("/metrics does not show method %q", want.method)
		}
	}
	if strings.Contains(body, "secret-plant") {
		t.Fatal("a caller's path became a label")
	}
	// A refused call is counted, not timed.
	if v, _ := value(t, reg, "e4_c2_api_request_duration_seconds", map[string]string{"protocol": "grpc", "method": "ListTopics"}); v != 1 {
		t.Fatalf("ListTopics latency observed %v times, want 1", v)
	}
}

// TestGRPCHealthFollowsSetServing: the gRPC health status of the server
// and of the C2 service is what SetServing last said, before and after
// Run starts.
func TestGRPCHealthFollowsSetServing(t *testing.T) {
	h := newHarness(t, "", nil)
	a := startAPI(t, h)
	health := healthpb.NewHealthClient(a.conn)
	check := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, service := range []string{"", "e4kit.c2.v1.C2"} {
			res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err != nil || res.Status != want {
				t.Fatalf("health of %q: %v %v, want %v", service, res, err, want)
			}
		}
	}
	check(healthpb.HealthCheckResponse_SERVING)
	a.srv.SetServing(false)
	check(healthpb.HealthCheckResponse_NOT_SERVING)
	a.srv.SetServing(true)
	check(healthpb.HealthCheckResponse_SERVING)
}
