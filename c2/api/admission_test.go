package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// heapGrowth runs attack and returns the bytes the process allocated
// meanwhile (runtime.MemStats.TotalAlloc, client and server: they share
// the process) and the largest growth of the live heap seen by a sampler.
// Two collections first empty the sync.Pools (gRPC keeps its buffers in
// them), so that reused buffers cannot hide what the attack costs.
func heapGrowth(attack func()) (allocated, peak uint64) {
	runtime.GC()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	sampled := make(chan uint64)
	go func() {
		var most uint64
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			most = max(most, ms.HeapAlloc)
			select {
			case <-stop:
				sampled <- most
				return
			case <-tick.C:
			}
		}
	}()
	attack()
	close(stop)
	peak = max(<-sampled, before.HeapAlloc) - before.HeapAlloc
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, peak
}

// largeBodyCallers and largeBodySize are the attack of the review: 20
// concurrent unauthenticated requests of 15 MiB.
const (
	largeBodyCallers = 20
	largeBodySize    = 15 << 20
)

// TestUnauthenticatedBodiesNotRead: 20 concurrent unauthenticated 15 MiB
// requests, over HTTP then gRPC, are refused (401, Unauthenticated)
// without their bodies being read: the process allocates less than 64
// MiB in all, where reading them would take 20 × 15 MiB = 300 MiB per
// listener. The clients send one shared buffer, so they allocate
// nothing per request.
func TestUnauthenticatedBodiesNotRead(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.FailedAuthPerSecond = -1 }})
	const bound = 64 << 20
	payload := bytes.Repeat([]byte{'0'}, largeBodySize) // hex of zeros, as JSON bytes
	httpBody := append(append([]byte(`{"format":"csv","data":"`), payload...), `"}`...)
	// A unary method: a stream's interceptor ran before its message was
	// read even before, a unary one only after.
	grpcBody, err := proto.Marshal(&c2pb.ProtectMessageRequest{Topic: "any/topic", Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	client := c.httpClient()
	allocated, peak := heapGrowth(func() {
		var wg sync.WaitGroup
		for i := range largeBodyCallers {
			wg.Go(func() {
				req, _ := http.NewRequest("POST", "https://"+c.srv.HTTPAddr()+"/v1/clients/import", bytes.NewReader(httpBody))
				req.Header.Set("Content-Type", "application/json")
				if i%2 == 1 {
					req.Header.Set("Authorization", "Bearer e4c2_not-a-token")
				}
				resp, err := client.Do(req)
				if err != nil {
					return // the server may close before the body is sent: refused too
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("unauthenticated large body: HTTP %d, want 401", resp.StatusCode)
				}
			})
		}
		wg.Wait()
	})
	t.Logf("HTTP: %d unauthenticated %d MiB bodies: %.1f MiB allocated, live heap growth %.1f MiB",
		largeBodyCallers, largeBodySize>>20, float64(allocated)/(1<<20), float64(peak)/(1<<20))
	if allocated > bound {
		t.Errorf("HTTP: the process allocated %d MiB for unauthenticated bodies, bound %d MiB", allocated>>20, bound>>20)
	}

	conn := c.conn(grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(32<<20)))
	allocated, peak = heapGrowth(func() {
		var wg sync.WaitGroup
		for i := range largeBodyCallers {
			wg.Go(func() {
				ctx := context.Background()
				if i%2 == 1 {
					ctx = as("e4c2_not-a-token")
				}
				var out []byte
				err := conn.Invoke(ctx, c2pb.C2_ProtectMessage_FullMethodName, &grpcBody, &out)
				if code := status.Code(err); code != codes.Unauthenticated && code != codes.Unavailable {
					t.Errorf("unauthenticated large message: %v, want Unauthenticated", err)
				}
			})
		}
		wg.Wait()
	})
	t.Logf("gRPC: %d unauthenticated %d MiB messages: %.1f MiB allocated, live heap growth %.1f MiB",
		largeBodyCallers, largeBodySize>>20, float64(allocated)/(1<<20), float64(peak)/(1<<20))
	if allocated > bound {
		t.Errorf("gRPC: the process allocated %d MiB for unauthenticated messages, bound %d MiB", allocated>>20, bound>>20)
	}
}

// TestInFlightBudget: with a budget of two large requests, a third
// authenticated large HTTP body sent while two are being received is
// refused with 429, and the budget comes back once they are gone.
func TestInFlightBudget(t *testing.T) {
	const maxBody = 1 << 20
	c := newTestC2(t, options{edit: func(cfg *api.Config) {
		cfg.MaxRequestBytes, cfg.MaxInFlightBytes, cfg.BodyReadTimeout = maxBody, 2*maxBody, time.Minute
	}})
	var held []net.Conn
	for range 2 {
		conn := c.rawHTTP(t)
		fmt.Fprintf(conn, "POST /v1/clients/import HTTP/1.1\r\nHost: c2\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", c.admin, maxBody)
		// The server asks for the body once it reserved its share.
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(line, "100 Continue") {
			t.Fatalf("held request: %q %v", line, err)
		}
		fmt.Fprint(conn, "{")
		held = append(held, conn)
	}
	body := `{"format":"csv","data":"` + strings.Repeat("A", maxBody-40) + `"}`
	if r := c.do("POST", "/v1/clients/import", c.admin, body); r.status != http.StatusTooManyRequests {
		t.Fatalf("a large body past the in-flight budget: HTTP %d %s, want 429", r.status, clipBody(string(r.body)))
	}
	for _, conn := range held {
		conn.Close()
	}
	// Closed senders give their share back (when the server notices:
	// poll, no sleep).
	var r httpResult
	for range 1000 {
		if r = c.do("POST", "/v1/topics", c.admin, `{"topic":"after/budget"}`); r.status != http.StatusTooManyRequests {
			break
		}
	}
	wantStatus(t, "a request after the held ones ended", r, http.StatusOK)
}

// rawHTTP opens a TLS connection to the HTTP listener.
func (c *testC2) rawHTTP(t *testing.T) net.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", c.srv.HTTPAddr(), c.clientTL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSlowBodyHTTP: a body that does not arrive within BodyReadTimeout is
// answered 408 and the connection closed, instead of holding it for as
// long as the sender trickles. An event stream, which reads nothing after
// its headers, outlives that deadline.
func TestSlowBodyHTTP(t *testing.T) {
	const deadline = 200 * time.Millisecond
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.BodyReadTimeout = deadline }})
	reader := c.token("reader", "read")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath, nil)
	req.Header.Set("Authorization", "Bearer "+reader)
	sseClient := c.httpClient()
	sseClient.Timeout = 0
	sse, err := sseClient.Do(req)
	if err != nil || sse.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %v %v", sse, err)
	}
	defer sse.Body.Close()

	conn := c.rawHTTP(t)
	fmt.Fprintf(conn, "POST /v1/topics HTTP/1.1\r\nHost: c2\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", c.admin)
	// Nothing more is sent. The client's own limit only keeps a broken
	// server from hanging the test.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: HTTP %d, want 408", resp.StatusCode)
	}

	// The SSE stream was opened before the stalled request and lasted
	// longer than the deadline: it still delivers.
	if _, err := c.client().AddTopic(as(c.admin), &c2pb.AddTopicRequest{Topic: "after/deadline"}); err != nil {
		t.Fatal(err)
	}
	if got := nextSSE(t, sse.Body); !strings.Contains(got, "after/deadline") {
		t.Fatalf("SSE after the body deadline: %q", got)
	}
}

// nextSSE reads one server-sent event block, failing after a generous
// wait.
func nextSSE(t *testing.T, body io.Reader) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(body)
		var block []string
		for lines.Scan() && lines.Text() != "" {
			block = append(block, lines.Text())
		}
		ch <- strings.Join(block, "\n")
	}()
	select {
	case got := <-ch:
		return got
	case <-time.After(30 * time.Second):
		t.Fatal("no SSE event within 30 s")
		return ""
	}
}

// throttledConn lets writes through at a trickle once stalled is set.
type throttledConn struct {
	net.Conn
	lim    *rate.Limiter
	closed chan struct{}
	once   sync.Once
}

func (c *throttledConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 1024)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-c.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := c.lim.WaitN(ctx, n)
		cancel()
		if err != nil {
			return written, net.ErrClosed
		}
		m, err := c.Conn.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (c *throttledConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestSlowMessageGRPC: a gRPC request message that does not arrive
// within BodyReadTimeout ends the call with DeadlineExceeded. The client
// writes at 8 KiB/s (after a burst for the handshake), so its 2 MiB
// message would take minutes.
func TestSlowMessageGRPC(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.BodyReadTimeout = 300 * time.Millisecond }})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &throttledConn{Conn: conn, lim: rate.NewLimiter(8<<10, 64<<10), closed: make(chan struct{})}, nil
	}
	conn, err := grpc.NewClient(c.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(c.clientTL)), grpc.WithContextDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// No deadline on the client's side: DeadlineExceeded can only come
	// from the server.
	stream, err := c2pb.NewC2Client(conn).ImportClients(as(c.admin), &c2pb.ImportClientsRequest{Format: "csv", Data: make([]byte, 2<<20)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "a trickled message", err, codes.DeadlineExceeded)
}

// refusalSummaries returns the counts of the aggregated refusal lines of
// a JSON log, and how many lines mention unauthenticated calls at all.
func refusalSummaries(t *testing.T, log string) (counts []int, lines int) {
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "unauthenticated") {
			continue
		}
		lines++
		var rec struct {
			Msg   string `json:"msg"`
			Count int    `json:"count"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "unauthenticated calls refused" {
			counts = append(counts, rec.Count)
		}
	}
	return counts, lines
}

// TestUnauthenticatedFlood: 2,000 calls with bad tokens from one address
// (1,000 HTTP, 1,000 gRPC) are logged as a few summary lines whose counts
// add up to 2,000, not a line each; past the address's failure budget
// they are refused with 429 / ResourceExhausted without a database read,
// so only a token already cached (used before the flood, within its
// cache TTL) still works from that address.
func TestUnauthenticatedFlood(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.TokenCacheTTL = time.Hour }})
	cl := c.client()
	reader := c.token("reader", "read")
	if _, err := cl.ListTopics(as(reader), &c2pb.ListTopicsRequest{}); err != nil {
		t.Fatal(err)
	}
	client := c.httpClient()
	const n = 1000
	var limitedHTTP, limitedGRPC int
	for i := range n {
		switch got := sendRaw(t, client, "https://"+c.srv.HTTPAddr(), fmt.Sprintf("e4c2_bad-%d", i), route{"GET", "/v1/topics", ""}); got {
		case http.StatusTooManyRequests:
			limitedHTTP++
		case http.StatusUnauthorized:
		default:
			t.Fatalf("bad token %d: HTTP %d", i, got)
		}
		_, err := cl.ListTopics(as(fmt.Sprintf("e4c2_bad-%d", i)), &c2pb.ListTopicsRequest{})
		switch status.Code(err) {
		case codes.ResourceExhausted:
			limitedGRPC++
		case codes.Unauthenticated:
		default:
			t.Fatalf("bad token %d over gRPC: %v", i, err)
		}
	}
	t.Logf("refused with 429: %d of %d HTTP calls; with ResourceExhausted: %d of %d gRPC calls", limitedHTTP, n, limitedGRPC, n)
	if limitedHTTP < n/2 || limitedGRPC < n/2 {
		t.Fatalf("the failure budget did not hold: %d HTTP and %d gRPC calls rate limited of %d each", limitedHTTP, limitedGRPC, n)
	}
	if _, err := cl.ListTopics(as(reader), &c2pb.ListTopicsRequest{}); err != nil {
		t.Fatalf("a cached valid token from the flooding address: %v", err)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	counts, lines := refusalSummaries(t, c.logs.String())
	total := 0
	for _, k := range counts {
		total += k
	}
	if lines > 3 || total != 2*n {
		t.Fatalf("%d log lines about unauthenticated calls, summaries %v (total %d), want at most 3 lines adding up to %d", lines, counts, total, 2*n)
	}
}
