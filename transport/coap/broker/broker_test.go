package broker_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport/coap/broker"
)

// These tests speak raw CoAP to the broker with go-coap, as any CoAP
// client would; the adapter's tests (package coap) cover the rest.

func start(t *testing.T) (*broker.Broker, *udpclient.Conn) {
	t.Helper()
	b, err := broker.Start("127.0.0.1:0", &broker.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	conn, err := udp.Dial(b.Addr().String(), options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return b, conn
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestResponses: the codes the broker answers with.
func TestResponses(t *testing.T) {
	_, conn := start(t)
	body := func() *bytes.Reader { return bytes.NewReader([]byte("x")) }
	for _, c := range []struct {
		what string
		do   func() (*pool.Message, error)
		want codes.Code
	}{
		{"PUT publishes", func() (*pool.Message, error) { return conn.Put(ctx(t), "/ps/a", message.AppOctets, body()) }, codes.Changed},
		{"POST publishes", func() (*pool.Message, error) { return conn.Post(ctx(t), "/ps/a", message.AppOctets, body()) }, codes.Changed},
		{"publishing on a filter", func() (*pool.Message, error) { return conn.Put(ctx(t), "/ps/a/+", message.AppOctets, body()) }, codes.BadRequest},
		{"outside the prefix", func() (*pool.Message, error) { return conn.Get(ctx(t), "/other/a") }, codes.NotFound},
		{"the prefix itself", func() (*pool.Message, error) { return conn.Get(ctx(t), "/ps") }, codes.NotFound},
		{"plain GET: no stored value", func() (*pool.Message, error) { return conn.Get(ctx(t), "/ps/a") }, codes.Content},
		{"DELETE", func() (*pool.Message, error) { return conn.Delete(ctx(t), "/ps/a") }, codes.MethodNotAllowed},
	} {
		resp, err := c.do()
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if resp.Code() != c.want {
			t.Errorf("%s: %v, want %v", c.what, resp.Code(), c.want)
		}
		conn.ReleaseMessage(resp)
	}
}

// notification is what an observer got, copied out of go-coap's pool.
type notification struct {
	code     codes.Code
	observe  uint32
	hasObs   bool
	etag     []byte
	location string
	body     []byte
	block2   uint32 // 0 without a Block2 option
	size2    uint32
}

func observe(t *testing.T, conn *udpclient.Conn, path string, opts ...message.Option) (<-chan notification, func() bool) {
	t.Helper()
	out := make(chan notification, 16)
	obs, err := conn.Observe(ctx(t), path, func(m *pool.Message) {
		n := notification{code: m.Code()}
		n.block2, _ = m.GetOptionUint32(message.Block2)
		n.size2, _ = m.GetOptionUint32(message.Size2)
		var obsErr error
		n.observe, obsErr = m.Observe()
		n.hasObs = obsErr == nil
		n.etag, _ = m.ETag()
		n.etag = bytes.Clone(n.etag)
		n.location, _ = m.Options().LocationPath()
		n.body, _ = m.ReadBody()
		out <- n
	}, opts...)
	if err != nil {
		t.Fatalf("observing %s: %v", path, err)
	}
	return out, obs.Canceled
}

func next(t *testing.T, ch <-chan notification) notification {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
		return notification{}
	}
}

// TestObserve: a topic can be observed before anything was published on
// it; notifications carry the message, a fresh ETag and a growing Observe
// number; filters name the concrete topic in Location-Path; Close ends
// observations with 5.03.
func TestObserve(t *testing.T) {
	b, conn := start(t)
	exact, canceled := observe(t, conn, "/ps/never/published")
	filtered, _ := observe(t, conn, "/ps/never/+")
	if reg := next(t, exact); reg.code != codes.Content || !reg.hasObs || len(reg.body) != 0 {
		t.Fatalf("registration answered %v, observe %v, %d bytes; want 2.05 with Observe, empty", reg.code, reg.hasObs, len(reg.body))
	}
	next(t, filtered)
	if n := b.Observers(); n != 2 {
		t.Errorf("%d observers, want 2", n)
	}

	var last notification
	for i, payload := range []string{"first", "second"} {
		resp, err := conn.Put(ctx(t), "/ps/never/published", message.AppOctets, strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		conn.ReleaseMessage(resp)
		n := next(t, exact)
		switch {
		case n.code != codes.Content || string(n.body) != payload:
			t.Errorf("notification %d: %v %q, want 2.05 %q", i, n.code, n.body, payload)
		case len(n.etag) == 0 || bytes.Equal(n.etag, last.etag):
			t.Errorf("notification %d: ETag %x after %x, want a new one", i, n.etag, last.etag)
		case i > 0 && n.observe <= last.observe:
			t.Errorf("notification %d: Observe %d after %d", i, n.observe, last.observe)
		}
		last = n
		if f := next(t, filtered); f.location != "/ps/never/published" || string(f.body) != payload {
			t.Errorf("filter notification: Location-Path %q, %q", f.location, f.body)
		}
	}

	_ = b.Close()
	if n := next(t, exact); n.code != codes.ServiceUnavailable || n.hasObs {
		t.Errorf("on Close: %v (Observe %v), want 5.03 without Observe", n.code, n.hasObs)
	}
	// go-coap drops the observation right after the callback returns.
	for deadline := time.Now().Add(5 * time.Second); !canceled(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client still counts the observation as live")
		}
	}
}
