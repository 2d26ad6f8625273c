package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// openStreams opens an event stream over gRPC and one over SSE with
// token, both admitted.
func (c *testC2) openStreams(t *testing.T, token string) (c2pb.C2_WatchEventsClient, io.ReadCloser) {
	t.Helper()
	ctx, cancel := context.WithCancel(as(token))
	t.Cleanup(cancel)
	stream, err := c.client().WatchEvents(ctx, &c2pb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	client := c.httpClient()
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %v %v", resp, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return stream, resp.Body
}

// wantStreamsEnd waits (30 s at most) for both streams to end: the gRPC
// one with Unauthenticated, the SSE one with an error event naming why.
func wantStreamsEnd(t *testing.T, stream c2pb.C2_WatchEventsClient, sse io.Reader, why string) {
	t.Helper()
	var grpcErr error
	var sseBody []byte
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if _, grpcErr = stream.Recv(); grpcErr != nil {
				return
			}
		}
	})
	wg.Go(func() { sseBody, _ = io.ReadAll(sse) })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the streams still run 30 s after the token %s", why)
	}
	if status.Code(grpcErr) != codes.Unauthenticated || !strings.Contains(grpcErr.Error(), why) {
		t.Fatalf("gRPC stream ended with %v, want Unauthenticated: %s", grpcErr, why)
	}
	if !strings.Contains(string(sseBody), "event: error") || !strings.Contains(string(sseBody), why) {
		t.Fatalf("SSE stream ended with %q, want an error event: %s", sseBody, why)
	}
}

// TestRevokeEndsStreams: revoking a token ends the event streams it
// opened, over gRPC and SSE; another token's stream goes on.
func TestRevokeEndsStreams(t *testing.T) {
	c := newTestC2(t, options{})
	reader := c.token("reader", "read")
	other := c.token("other", "read")
	stream, sse := c.openStreams(t, reader)
	otherStream, _ := c.openStreams(t, other)
	if _, err := c.client().RevokeToken(as(c.admin), &c2pb.RevokeTokenRequest{Name: "reader"}); err != nil {
		t.Fatal(err)
	}
	wantStreamsEnd(t, stream, sse, "revoked")
	if _, err := c.client().AddTopic(as(c.admin), &c2pb.AddTopicRequest{Topic: "after/revoke"}); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, otherStream); e.Topic != "after/revoke" {
		t.Fatalf("the other token's stream: %v", e)
	}
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// TestExpiryEndsStreams: when a token expires (the server's clock passes
// its expiry), the streams it opened end, over gRPC and SSE.
func TestExpiryEndsStreams(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.Now = clock.Now }})
	res, err := c.client().CreateToken(as(c.admin), &c2pb.CreateTokenRequest{Name: "brief", Scope: "read", TtlSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	stream, sse := c.openStreams(t, res.Secret)
	clock.advance(2 * time.Hour)
	wantStreamsEnd(t, stream, sse, "expired")
}

// openWatch opens a gRPC event stream and returns once the server
// admitted or refused it (a refusal comes as trailers only, without a
// header).
func (c *testC2) openWatch(ctx context.Context) error {
	stream, err := c.client().WatchEvents(ctx, &c2pb.WatchEventsRequest{})
	if err != nil {
		return err
	}
	md, err := stream.Header()
	if err != nil {
		return err
	}
	if len(md) == 0 {
		_, err = stream.Recv()
		return err
	}
	return nil
}

// TestStreamsPerCaller: one token keeps at most 64 streams open (gRPC and
// SSE together); the next is refused with ResourceExhausted / 429, and
// closing one makes room.
func TestStreamsPerCaller(t *testing.T) {
	c := newTestC2(t, options{})
	reader := c.token("reader", "read")
	var cancels []context.CancelFunc
	for range 32 {
		ctx, cancel := context.WithCancel(as(reader))
		cancels = append(cancels, cancel)
		if err := c.openWatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	for range 16 {
		c.openStreams(t, reader) // one gRPC, one SSE
	}
	if _, err := c.client().ListTopics(as(reader), &c2pb.ListTopicsRequest{}); err != nil {
		t.Fatalf("a unary call with 64 streams open: %v", err)
	}
	ctx, cancel := context.WithCancel(as(reader))
	defer cancel()
	wantCode(t, "the 65th stream", c.openWatch(ctx), codes.ResourceExhausted)
	req, _ := http.NewRequest("GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath, nil)
	req.Header.Set("Authorization", "Bearer "+reader)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the 65th stream over SSE: HTTP %d, want 429", resp.StatusCode)
	}
	cancels[0]()
	for range 1000 { // until the server notices the cancel: poll, no sleep
		if err = c.openWatch(ctx); status.Code(err) != codes.ResourceExhausted {
			break
		}
	}
	if err != nil {
		t.Fatalf("a stream after one was closed: %v", err)
	}
}
