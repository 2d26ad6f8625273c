package coap_test

import (
	"context"
	"errors"
	"fmt"
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

// TestReceiveLimits: a notification over MaxPayload is refused (reported
// as transport.ErrTooLarge) and the messages around it arrive in order,
// through a byte budget smaller than what waits for Receive.
func TestReceiveLimits(t *testing.T) {
	b := startBroker(t, nil)
	tooLarge := make(chan error, 4)
	cfg := testConfig(b.addr)
	cfg.MaxPayload = 8 << 10
	cfg.ReceiveBytes = 6 << 10
	cfg.OnError = func(err error) {
		if errors.Is(err, transport.ErrTooLarge) {
			tooLarge <- err
		}
	}
	sub := dial(t, cfg)
	pubCfg := testConfig(b.addr)
	pubCfg.MaxPayload = 64 << 10
	pub := dial(t, pubCfg)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := sub.Subscribe(ctx, "limits/topic")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 4 {
		small := fmt.Sprintf("small %d %03000d", i, 0) // about 3 KiB
		want = append(want, small)
		if err := pub.Publish(ctx, "limits/topic", []byte(small)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := pub.Publish(ctx, "limits/topic", make([]byte, 32<<10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, w := range want {
		m, err := s.Receive(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(m.Payload) != w {
			t.Fatalf("message %d: got %.12q, want %.12q", i, m.Payload, w)
		}
	}
	select {
	case <-tooLarge:
	default:
		t.Fatal("the oversized notification was not reported")
	}
}
