package api_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// nextEvent receives one event, failing after a generous wait.
func nextEvent(t *testing.T, stream c2pb.C2_WatchEventsClient) *c2pb.Event {
	t.Helper()
	type result struct {
		e   *c2pb.Event
		err error
	}
	ch := make(chan result, 1)
	go func() {
		e, err := stream.Recv()
		ch <- result{e, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.e
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30 s")
		return nil
	}
}

// TestWatchEvents: a subscriber sees changes as they commit, filtered by
// kind; a late subscriber resumes after an event id without a gap or a
// repeat; an id of an earlier run starts with events_lost.
func TestWatchEvents(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	ops := c.token("ops", "operate")
	reader := c.token("reader", "read")
	ctx, cancel := context.WithCancel(as(reader))
	defer cancel()
	stream, err := cl.WatchEvents(ctx, &c2pb.WatchEventsRequest{Kinds: []string{"client_added", "topic_added", "member_added"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddClient(as(ops), &c2pb.AddClientRequest{Name: "dev-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddTopic(as(ops), &c2pb.AddTopicRequest{Topic: "t/1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddMember(as(ops), &c2pb.MemberRequest{Client: "dev-1", Topic: "t/1"}); err != nil {
		t.Fatal(err)
	}
	first := nextEvent(t, stream)
	if first.Kind != "client_added" || first.ClientId != e4.IDFromName("dev-1").String() {
		t.Fatalf("first event: %v", first)
	}
	second := nextEvent(t, stream)
	third := nextEvent(t, stream)
	if second.Kind != "topic_added" || third.Kind != "member_added" || third.Topic != "t/1" {
		t.Fatalf("events: %v, %v", second, third)
	}

	// The same kinds: without them, the command_sent of the SetTopicKey
	// that member_added queued can come before t/live's topic_added.
	resumed, err := cl.WatchEvents(ctx, &c2pb.WatchEventsRequest{After: first.Id, Kinds: []string{"client_added", "topic_added", "member_added"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := nextEvent(t, resumed); got.Id != second.Id {
		t.Fatalf("resume after %s gave %v, want %s", first.Id, got, second.Id)
	}
	// The resumed stream goes on past its backlog to live events (it used
	// to end after the first: its header was sent after the backlog).
	if got := nextEvent(t, resumed); got.Id != third.Id {
		t.Fatalf("resume after %s gave then %v, want %s", first.Id, got, third.Id)
	}
	if _, err := cl.AddTopic(as(ops), &c2pb.AddTopicRequest{Topic: "t/live"}); err != nil {
		t.Fatal(err)
	}
	if got := nextEvent(t, resumed); got.Topic != "t/live" {
		t.Fatalf("after the backlog came %v, want the live topic_added of t/live", got)
	}
	stale, err := cl.WatchEvents(ctx, &c2pb.WatchEventsRequest{After: "0000beef-12"})
	if err != nil {
		t.Fatal(err)
	}
	if got := nextEvent(t, stale); got.Kind != api.EventLost {
		t.Fatalf("resume from another run began with %v, want %s", got, api.EventLost)
	}
	if got := nextEvent(t, stale); got.Id != first.Id {
		t.Fatalf("after events_lost came %v, want the oldest event %s", got, first.Id)
	}
	bad, err := cl.WatchEvents(ctx, &c2pb.WatchEventsRequest{After: "garbage"})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, "malformed event id", err, codes.InvalidArgument)

	list, err := cl.ListEvents(as(reader), &c2pb.ListEventsRequest{After: first.Id, Limit: 1})
	if err != nil || len(list.Events) != 1 || list.Events[0].Id != second.Id {
		t.Fatalf("ListEvents: %v %v", list, err)
	}
	unauth, err := cl.WatchEvents(context.Background(), &c2pb.WatchEventsRequest{})
	if err == nil {
		_, err = unauth.Recv()
	}
	wantCode(t, "watching without a token", err, codes.Unauthenticated)
}

// TestServerSentEvents: the same stream over HTTP, resumed with
// Last-Event-ID; a missing token is a 401, not an event.
func TestServerSentEvents(t *testing.T) {
	c := newTestC2(t, options{})
	reader := c.token("reader", "read")
	c.hub.Publish(c2.Event{Kind: c2.EventTopicAdded, Topic: "before"})
	all, err := c.hub.List("", 0)
	if err != nil || len(all) != 1 {
		t.Fatalf("hub: %v %v", all, err)
	}

	req, _ := http.NewRequest("GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath, nil)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SSE without a token: HTTP %d", resp.StatusCode)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath, nil)
	req.Header.Set("Authorization", "Bearer "+reader)
	req.Header.Set("Last-Event-ID", all[0].Id)
	client := c.httpClient()
	client.Timeout = 0
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, err := c.client().AddTopic(as(c.token("ops", "operate")), &c2pb.AddTopicRequest{Topic: "after"}); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(resp.Body)
	var block []string
	for lines.Scan() {
		if lines.Text() == "" {
			break
		}
		block = append(block, lines.Text())
	}
	got := strings.Join(block, "\n")
	if !strings.Contains(got, "event: topic_added") || !strings.Contains(got, `"topic":"after"`) || strings.Contains(got, `"topic":"before"`) {
		t.Fatalf("first SSE event after %s:\n%s", all[0].Id, got)
	}
	if !strings.HasPrefix(block[0], "id: ") {
		t.Fatalf("SSE event without an id line: %q", block)
	}
}
