package api_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// route is a REST route with a body that the service accepts, the base
// of the malformed variants.
type route struct {
	method, path, body string
}

var routes = []route{
	{"POST", "/v1/clients", `{"name":"fuzz-client"}`},
	{"GET", "/v1/clients/fuzz-client", ""},
	{"GET", "/v1/clients?limit=10", ""},
	{"DELETE", "/v1/clients/fuzz-client", ""},
	{"POST", "/v1/clients/fuzz-client/reset", ""},
	{"POST", "/v1/clients/fuzz-client/key", `{}`},
	{"POST", "/v1/clients/import", `{"format":"csv","data":"bmFtZQphCg=="}`},
	{"GET", "/v1/clients/fuzz-client/topics", ""},
	{"POST", "/v1/clients/fuzz-client/pubkeys/reset", ""},
	{"GET", "/v1/clients/fuzz-client/links", ""},
	{"POST", "/v1/clients/fuzz-client/c2-signer", ""},
	{"POST", "/v1/topics", `{"topic":"fuzz/topic"}`},
	{"GET", "/v1/topics", ""},
	{"GET", "/v1/topics/fuzz/topic", ""},
	{"DELETE", "/v1/topics/fuzz/topic", ""},
	{"POST", "/v1/rotations", `{"topic":"fuzz/topic"}`},
	{"POST", "/v1/members", `{"client":"fuzz-client","topic":"fuzz/topic"}`},
	{"POST", "/v1/members/batch", `{"topic":"fuzz/topic","clients":["fuzz-client"]}`},
	{"DELETE", "/v1/members/fuzz-client/fuzz/topic", ""},
	{"GET", "/v1/members/fuzz-client/fuzz/topic", ""},
	{"GET", "/v1/members?topic=fuzz/topic", ""},
	{"POST", "/v1/pubkeys/send", `{"target":"a","source":"b"}`},
	{"POST", "/v1/pubkeys/remove", `{"target":"a","source":"b"}`},
	{"POST", "/v1/links", `{"source":"a","target":"b"}`},
	{"DELETE", "/v1/links/a/b", ""},
	{"GET", "/v1/c2-key", ""},
	{"POST", "/v1/c2-key/rotate", `{}`},
	{"POST", "/v1/messages/protect", `{"topic":"fuzz/topic","payload":"aGk="}`},
	{"POST", "/v1/messages/unprotect", `{"topic":"fuzz/topic","protected":"aGk="}`},
	{"GET", "/v1/commands/00000000000000000000000000000000", ""},
	{"GET", "/v1/commands?state=pending", ""},
	{"GET", "/v1/health", ""},
	{"GET", "/v1/info", ""},
	{"GET", "/v1/events?limit=5", ""},
	{"GET", "/v1/audit?limit=5", ""},
	{"POST", "/v1/tokens", `{"name":"fuzz-token","scope":"read"}`},
	{"GET", "/v1/tokens", ""},
	{"DELETE", "/v1/tokens/fuzz-token", ""},
}

// malformedBodies are bodies no route accepts: bad JSON, wrong types,
// unknown fields, values out of range.
var malformedBodies = []string{
	`{`, `}`, `[]`, `null x`, `{"name":}`, `{"name":"a"`, `{"name":1e999}`, `{"name":["x"]}`, `{"name":{"a":1}}`,
	`{"unknown_field":1}`, `{"limit":"many"}`, `{"key":"not hex!"}`, `{"ttl_seconds":"-1x"}`, "\x00\x01\x02",
	`{"name":"\ud800"}`, strings.Repeat("[", 10000), `{"topic":` + strings.Repeat(`"x"`, 3) + `}`, `{"clients":"x"}`,
}

// malformedRequests are requests with a valid token that no route may
// accept: each must get a 4xx, never a 5xx.
func malformedRequests() []route {
	var out []route
	for _, r := range routes {
		if r.body != "" {
			for _, b := range malformedBodies {
				out = append(out, route{r.method, r.path, b})
			}
		}
	}
	badValues := []route{
		{"POST", "/v1/topics", `{"topic":"a/+/b"}`}, {"POST", "/v1/topics", `{"topic":"#"}`}, {"POST", "/v1/topics", `{"topic":""}`},
		{"POST", "/v1/topics", `{"topic":"a\u0000b"}`}, {"POST", "/v1/topics", `{"topic":"` + strings.Repeat("t", 300) + `"}`},
		{"POST", "/v1/clients", `{"name":"x","key":"010203"}`}, {"POST", "/v1/clients", `{"name":"x","id":"zz"}`},
		{"POST", "/v1/clients", `{}`}, {"POST", "/v1/clients", `{"name":"x\u0007"}`},
		{"POST", "/v1/clients", `{"name":"x","key":"0000000000000000000000000000000000000000000000000000000000000000","password":"long enough password"}`},
		{"POST", "/v1/clients", `{"name":"y","id":"00000000000000000000000000000001"}`},
		{"POST", "/v1/clients", `{"id":"00000000000000000000000000000000"}`},
		{"POST", "/v1/clients/import", `{"format":"csv","data":"69640a30303030303030303030303030303030303030303030303030303030303030300a"}`},
		{"GET", "/v1/clients?limit=-1", ""}, {"GET", "/v1/clients?limit=99999999999", ""}, {"GET", "/v1/clients?after=xyz", ""},
		{"GET", "/v1/clients?limit=abc", ""}, {"GET", "/v1/commands?state=lost", ""}, {"GET", "/v1/commands/zz", ""},
		{"GET", "/v1/events?after=nonsense", ""}, {"GET", "/v1/events?limit=100000", ""}, {"GET", "/v1/audit?limit=-4", ""},
		{"GET", "/v1/audit?since=yesterday", ""}, {"POST", "/v1/tokens", `{"name":"bad name","scope":"read"}`},
		{"POST", "/v1/tokens", `{"name":"ok","scope":"superuser"}`}, {"POST", "/v1/members/batch", `{"topic":"t","clients":[]}`},
		{"POST", "/v1/clients/import", `{"format":"xml","data":"78"}`}, {"POST", "/v1/clients/import", `{"format":"csv","data":""}`},
		{"POST", "/v1/clients/import", `{"format":"csv","data":"636f6c6f75720a7265640a"}`},
		{"GET", "/v1/nothing", ""}, {"GET", "/v1/clients/a/b/c/d", ""}, {"PUT", "/v1/clients", ""}, {"GET", "/v1//", ""},
		{"GET", "/v1/clients/%ZZ", ""}, {"GET", "/v1/topics/%00", ""}, {"GET", "/../../etc/passwd", ""},
		{"GET", "/v1/clients/" + strings.Repeat("a", 5000), ""}, {"DELETE", "/v1/tokens/" + strings.Repeat("n", 100), ""},
		{"GET", "/v1/members/x", ""}, {"POST", "/v1/links", `{"source":"a","target":"a"}`},
	}
	return append(out, badValues...)
}

// sendRaw sends one request and returns its status.
func sendRaw(t testing.TB, client *http.Client, base, token string, r route) int {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		return http.StatusBadRequest // not even sendable: refused by construction
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRefusedRequests sends every route without a token, with a token
// that does not exist, and malformed requests with a valid token: all are
// refused with a 4xx, none gets a 5xx. The counts are logged (go test -v).
func TestRefusedRequests(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.RatePerSecond, cfg.FailedAuthPerSecond = -1, -1 }})
	base := "https://" + c.srv.HTTPAddr()
	client := c.httpClient()
	var unauthenticated, malformed int
	for _, token := range []string{"", "e4c2_no-such-token", "not-even-a-token"} {
		for _, r := range routes {
			if got := sendRaw(t, client, base, token, r); got != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: HTTP %d, want 401", r.method, r.path, token, got)
			}
			unauthenticated++
		}
	}
	for _, r := range malformedRequests() {
		got := sendRaw(t, client, base, c.admin, r)
		if got < 400 || got >= 500 {
			t.Errorf("%s %s %q: HTTP %d, want a 4xx", r.method, r.path, clipBody(r.body), got)
		}
		malformed++
	}
	sent, undecodable := sendMalformedGRPC(t, c)
	t.Logf("refused: %d unauthenticated HTTP requests (401), %d malformed HTTP requests (4xx); "+
		"%d garbage gRPC messages sent, %d refused as undecodable (InvalidArgument), none answered with Internal/Unknown",
		unauthenticated, malformed, sent, undecodable)
}

func clipBody(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// rawCodec sends bytes as they are, to feed gRPC methods broken messages.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// sendMalformedGRPC sends random bytes to every unary method. Bytes that
// do not decode must be refused with InvalidArgument; bytes that happen to
// decode are a request like any other. None may get Internal or Unknown.
func sendMalformedGRPC(t *testing.T, c *testC2) (sent, undecodable int) {
	conn := c.conn(grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	garbage := [][]byte{{0xff}, {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, {0x12, 0x05, 'a'}, bytes.Repeat([]byte{0x80}, 64), {0x0a, 0x02, 0xc3, 0x28}}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b := make([]byte, 1+r.IntN(64))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		garbage = append(garbage, b)
	}
	for _, m := range c2pb.C2_ServiceDesc.Methods {
		method := "/" + c2pb.C2_ServiceDesc.ServiceName + "/" + m.MethodName
		for _, g := range garbage {
			in, out := g, []byte(nil)
			err := conn.Invoke(as(c.admin), method, &in, &out)
			sent++
			if st := status.Convert(err); st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "not a valid protobuf") {
				undecodable++
			}
			switch status.Code(err) {
			case codes.Internal, codes.Unknown, codes.Unavailable, codes.DataLoss, codes.Unimplemented:
				t.Errorf("%s with %x: %v", m.MethodName, g, err)
			}
		}
	}
	return sent, undecodable
}

// FuzzHTTP sends fuzzed methods, paths and bodies with a valid token:
// whatever the input, the answer is never a 5xx (and the server does not
// fall over). Run with: go test -fuzz FuzzHTTP ./c2/api/
func FuzzHTTP(f *testing.F) {
	for _, r := range append(routes, malformedRequests()...) {
		f.Add(r.method, r.path, r.body)
	}
	c := newTestC2(f, options{edit: func(cfg *api.Config) { cfg.RatePerSecond, cfg.FailedAuthPerSecond = -1, -1 }})
	client := c.httpClient()
	// The event stream never ends by itself: bound every request, and take
	// a timeout as the stream working.
	client.Timeout = 5 * time.Second
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(context.Background(), method, "https://"+c.srv.HTTPAddr()+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+c.admin)
		resp, err := client.Do(req)
		if err != nil {
			return // refused by the HTTP layer before any handler
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %q %q: HTTP %d", method, path, clipBody(body), resp.StatusCode)
		}
	})
}
