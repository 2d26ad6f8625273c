package web

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// TestEventStreamEndsWithToken: the live events reach a signed-in
// browser, and the stream ends when the session's token is revoked.
func TestEventStreamEndsWithToken(t *testing.T) {
	c := startC2(t, e4.SymKey)
	c.gui.recheck = 20 * time.Millisecond
	b := c.signedIn(c.operator)
	b.http.Timeout = 0
	req, err := http.NewRequest(http.MethodGet, c.base+"/ui/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitLine := func(want string) {
		t.Helper()
		for line := range lines {
			if strings.Contains(line, want) {
				return
			}
		}
		t.Fatalf("the stream ended before %q", want)
	}
	waitLine(": open")
	if _, err := c.svc.AddTopic(context.Background(), "plant/streamed"); err != nil {
		t.Fatal(err)
	}
	waitLine("event: topic_added")
	if err := c.srv.Access().RevokeToken(context.Background(), c.adminCaller, "test", "ops"); err != nil {
		t.Fatal(err)
	}
	waitLine("event: signed_out")
	for range lines { // the server ends the stream
	}
}
