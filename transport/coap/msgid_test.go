package coap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/e4-iot/e4kit/transport/coap"
)

// TestReusedMessageIDIsARetransmission shows why the adapter and the
// broker count their Message IDs: a request reusing the ID of a recent one
// is answered from the server's cache as a retransmission (with the first
// request's token, so a client waits in vain) and its message is never
// published.
func TestReusedMessageIDIsARetransmission(t *testing.T) {
	b := startBroker(t, nil)
	sub := subscribe(t, dial(t, testConfig(b.addr)), "reuse/t")
	app := dialApp(t, b.addr)
	put := func(body string, wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		req, err := app.NewPutRequest(ctx, "/ps/reuse/t", message.TextPlain, bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer app.ReleaseMessage(req)
		req.SetMessageID(4242)
		resp, err := app.Do(req)
		if err != nil {
			return err
		}
		defer app.ReleaseMessage(resp)
		if resp.Code() != codes.Changed {
			return fmt.Errorf("answered %v", resp.Code())
		}
		return nil
	}
	if err := put("first", testTimeout); err != nil {
		t.Fatalf("first PUT: %v", err)
	}
	_ = put("second", time.Second) // no answer of its own
	if m := receive(t, sub); string(m.Payload) != "first" {
		t.Fatalf("received %q, want first", m.Payload)
	}
	expectQuiet(t, sub) // "second" was taken for a copy of "first"
}

// TestPublishWaitsForAFreeMessageID: past its budget of Message IDs per
// exchange lifetime, Publish waits (here until its context ends, sending
// nothing) instead of reusing an ID; once the window has passed it
// publishes again, and every message sent arrives, in order.
func TestPublishWaitsForAFreeMessageID(t *testing.T) {
	b := startBroker(t, nil)
	sub := subscribe(t, dial(t, testConfig(b.addr)), "budget/t")
	cfg := testConfig(b.addr)
	cfg.KeepAlive = -1 // its pings would take IDs too, and move the count
	pub := dial(t, cfg)
	const window, dataIDs = 2 * time.Second, 20
	coap.SetMessageIDBudget(pub, window, 1000+dataIDs) // 1000: the control reserve
	for i := range dataIDs {
		publish(t, pub, "budget/t", fmt.Appendf(nil, "m%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := pub.Publish(ctx, "budget/t", []byte("too soon")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publishing past the budget: %v, want the context's deadline", err)
	}
	for i := range dataIDs {
		if m := receive(t, sub); string(m.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %q", i, m.Payload)
		}
	}
	expectQuiet(t, sub)
	publish(t, pub, "budget/t", []byte("later")) // waits out the window
	if m := receive(t, sub); string(m.Payload) != "later" {
		t.Fatalf("after the window: %q", m.Payload)
	}
}
