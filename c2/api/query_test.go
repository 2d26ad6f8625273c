package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
)

// TestHTTPQueryRefused: a query parameter a route does not take is a 400
// that names it and the ones the route takes, on every kind of route: one
// that reads its query, one whose fields all come from the path, one with
// a JSON body, and the server-sent events. The old after_id among them:
// it used to be ignored and return every record.
func TestHTTPQueryRefused(t *testing.T) {
	c := newTestC2(t, options{})
	reader := c.token("reader", "read")
	ops := c.token("ops", "operate")
	cases := []struct {
		method, path, body, want string
	}{
		{"GET", "/v1/events?after_id=x", "", `unknown query parameter "after_id": GET /v1/events takes after, limit`},
		{"GET", "/v1/clients?afterr=x", "", `unknown query parameter "afterr": GET /v1/clients takes after, limit`},
		{"GET", "/v1/clients/pump-7/topics?client=x", "", `query parameter "client" is given in the path: GET /v1/clients/{client}/topics takes after, limit`},
		{"GET", "/v1/topics/a/b?verbose=1", "", `unknown query parameter "verbose": GET /v1/topics/{topic} takes no query parameters`},
		{"DELETE", "/v1/clients/pump-7?force=1", "", `unknown query parameter "force": DELETE /v1/clients/{client} takes no query parameters`},
		{"POST", "/v1/topics?topic=a/b", `{"topic":"a/b"}`, `query parameter "topic" is given in the JSON body: POST /v1/topics takes no query parameters`},
		{"GET", "/v1/audit?after_seq=3", "", "GET /v1/audit takes actor, action, target, outcome, since, until, after, limit"},
		{"GET", api.EventStreamPath + "?kind=topic_added", "", `unknown query parameter "kind": GET /v1/events/stream takes after, kinds`},
	}
	for _, tc := range cases {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		r := c.do(tc.method, tc.path, ops, body)
		wantStatus(t, tc.method+" "+tc.path, r, http.StatusBadRequest)
		if msg, _ := r.json["message"].(string); !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, msg, tc.want)
		}
	}
	if _, err := c.svc.GetTopic(context.Background(), "a/b"); err == nil {
		t.Fatal("a refused request changed something")
	}
	wantStatus(t, "unknown parameter without a token", c.do("GET", "/v1/events?after_id=x", "", nil), http.StatusUnauthorized)
	wantStatus(t, "known parameters", c.do("GET", "/v1/commands?client=pump-7&state=pending&after=0&limit=2", reader, nil), http.StatusOK)
	wantStatus(t, "known audit parameters", c.do("GET", "/v1/audit?action=AddClient&since=2026-01-01T00:00:00Z&limit=3", c.admin, nil), http.StatusOK)
}

// TestHTTPPagination: every list pages with after and limit, over REST
// and server-sent events alike.
func TestHTTPPagination(t *testing.T) {
	c := newTestC2(t, options{})
	ops := c.token("ops", "operate")
	for _, name := range []string{"a", "b", "c"} {
		wantStatus(t, "add client", c.do("POST", "/v1/clients", ops, map[string]any{"name": name}), http.StatusOK)
	}
	first := c.do("GET", "/v1/clients?limit=1", ops, nil)
	clients, _ := first.json["clients"].([]any)
	if len(clients) != 1 || first.json["total"] != json.Number("3") {
		t.Fatalf("first page: %s", first.body)
	}
	firstID := clients[0].(map[string]any)["id"].(string)
	next := c.do("GET", "/v1/clients?limit=5&after="+firstID, ops, nil)
	if clients, _ := next.json["clients"].([]any); len(clients) != 2 || strings.Contains(string(next.body), firstID) {
		t.Fatalf("page after %s: %s", firstID, next.body)
	}

	audit := c.do("GET", "/v1/audit?action=AddClient&limit=1", c.admin, nil)
	records, _ := audit.json["records"].([]any)
	if len(records) != 1 {
		t.Fatalf("audit page: %s", audit.body)
	}
	id := records[0].(map[string]any)["id"].(json.Number)
	rest := c.do("GET", "/v1/audit?action=AddClient&after="+id.String(), c.admin, nil)
	if records, _ := rest.json["records"].([]any); len(records) != 2 {
		t.Fatalf("audit after %s: %s", id, rest.body)
	}

	events, err := c.hub.List("", 0)
	if err != nil || len(events) < 3 {
		t.Fatalf("events: %v %v", events, err)
	}
	page := c.do("GET", "/v1/events?after="+events[0].Id+"&limit=1", ops, nil)
	if list, _ := page.json["events"].([]any); len(list) != 1 || list[0].(map[string]any)["id"] != events[1].Id {
		t.Fatalf("events after %s: %s", events[0].Id, page.body)
	}

	c.hub.Publish(c2.Event{Kind: c2.EventTopicAdded, Topic: "resumed"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.srv.HTTPAddr()+api.EventStreamPath+
		"?after="+events[len(events)-1].Id+"&kinds="+string(c2.EventTopicAdded), nil)
	req.Header.Set("Authorization", "Bearer "+ops)
	client := c.httpClient()
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "data: ") {
	}
	if !strings.Contains(lines.Text(), `"topic":"resumed"`) {
		t.Fatalf("SSE after %s: %q", events[len(events)-1].Id, lines.Text())
	}
	c.hub.Publish(c2.Event{Kind: c2.EventTopicAdded, Topic: "live"})
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "data: ") && !strings.HasPrefix(lines.Text(), "event: error") {
	}
	if !strings.Contains(lines.Text(), `"topic":"live"`) {
		t.Fatalf("SSE after its backlog: %q, want the live event", lines.Text())
	}
}
