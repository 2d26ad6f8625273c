package coap_test

import (
	"context"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
)

// eventLog collects the connection events of a transport.
func eventLog(t *testing.T, n transport.ConnectionNotifier) <-chan transport.ConnectionEvent {
	events := make(chan transport.ConnectionEvent, 64)
	stop := n.NotifyConnection(func(ev transport.ConnectionEvent) {
		select {
		case events <- ev:
		default:
		}
	})
	t.Cleanup(stop)
	return events
}

// awaitState waits for an event of the given state, skipping others.
func awaitState(t *testing.T, events <-chan transport.ConnectionEvent, want transport.ConnectionState) {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case ev := <-events:
			if ev.State == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event within %v", want, testTimeout)
		}
	}
}

// TestConnectRetryAndEvents: with ConnectRetry, Dial returns while the
// broker is down and reports it; a Subscribe made meanwhile completes once
// the broker is up. A broker outage long enough to miss pings is reported
// as Disconnected, then Connected once the subscription observes again: a
// message published once after that arrives.
func TestConnectRetryAndEvents(t *testing.T) {
	b := startBroker(t, nil)
	b.stop()
	cfg := testConfig(b.addr)
	cfg.ConnectRetry = true
	tr := dial(t, cfg)
	events := eventLog(t, tr)
	awaitState(t, events, transport.Disconnected)

	type subscribed struct {
		sub transport.Subscription
		err error
	}
	subDone := make(chan subscribed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		sub, err := tr.Subscribe(ctx, "events/topic")
		subDone <- subscribed{sub, err}
	}()
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	awaitState(t, events, transport.Connected)
	s := <-subDone
	if s.err != nil {
		t.Fatalf("Subscribe while connecting: %v", s.err)
	}
	pub := dial(t, testConfig(b.addr))
	publishAndReceive(t, pub, s.sub, "first")

	// An outage: the pings go unanswered, then the broker comes back.
	b.stop()
	awaitState(t, events, transport.Disconnected)
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	awaitState(t, events, transport.Connected)
	publishAndReceive(t, pub, s.sub, "after the outage")
}

// publishAndReceive publishes payload once and expects it on sub.
func publishAndReceive(t *testing.T, pub *coap.Transport, sub transport.Subscription, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := pub.Publish(ctx, "events/topic", []byte(payload)); err != nil {
		t.Fatalf("publishing %q: %v", payload, err)
	}
	m, err := sub.Receive(ctx)
	if err != nil {
		t.Fatalf("receiving %q: %v", payload, err)
	}
	if string(m.Payload) != payload {
		t.Fatalf("got %q, want %q", m.Payload, payload)
	}
}
