package amqp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

// TestOversizedDeliveriesRefused: deliveries over MaxMessageSize are
// refused and counted, the small ones around them arrive in order; a
// byte budget smaller than the messages waiting holds the broker back
// without losing any.
func TestOversizedDeliveriesRefused(t *testing.T) {
	r := broker(t)
	cfg := testConfig(r)
	cfg.MaxMessageSize = 1 << 20
	cfg.QueueBytes = 4 << 10 // fewer bytes than the small messages sent
	sub := dial(t, cfg)
	pub := dial(t, testConfig(r))
	topic := uniqueTopic(t, "big")
	s, err := sub.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	huge := make([]byte, 4<<20)
	const rounds = 3
	var want []string
	for i := range rounds {
		for j := range 4 {
			small := fmt.Sprintf("small %d.%d %0*d", i, j, 2000, 0) // about 2 KiB
			want = append(want, small)
			if err := pub.Publish(testContext(t), topic, []byte(small)); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Publish(testContext(t), topic, huge); err != nil {
			t.Fatal(err)
		}
	}
	// A last small message: once it is received, every oversized
	// delivery before it was handled.
	want = append(want, "end")
	if err := pub.Publish(testContext(t), topic, []byte("end")); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		m, err := s.Receive(testContext(t))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(m.Payload) != w {
			t.Fatalf("message %d: got %.20q, want %.20q", i, m.Payload, w)
		}
	}
	if got := sub.Oversized(); got != rounds {
		t.Fatalf("Oversized() = %d, want %d", got, rounds)
	}
}

// startTimeout bounds the start of the node.
const startTimeout = 2 * time.Minute

// TestConnectRetryWhileBrokerDown: with ConnectRetry, Dial returns while
// the node is down and reports it as Disconnected; Subscribe and Publish
// made meanwhile complete once it is up, after a Connected event.
func TestConnectRetryWhileBrokerDown(t *testing.T) {
	r := broker(t)
	r.StopNode()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = r.StartNode(context.Background())
		}
	})
	cfg := testConfig(r)
	cfg.ConnectRetry = true
	tr := dial(t, cfg)
	events := make(chan transport.ConnectionEvent, 16)
	tr.NotifyConnection(func(ev transport.ConnectionEvent) {
		select {
		case events <- ev:
		default:
		}
	})
	if ev := <-events; ev.State != transport.Disconnected || ev.Err == nil {
		t.Fatalf("first event %+v, want Disconnected with its error", ev)
	}
	topic := uniqueTopic(t, "late")
	subscribed := make(chan transport.Subscription, 1)
	go func() {
		s, err := tr.Subscribe(testContext(t), topic)
		if err != nil {
			t.Errorf("Subscribe while connecting: %v", err)
		}
		subscribed <- s
	}()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := r.StartNode(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	for ev := range events {
		if ev.State == transport.Connected {
			break
		}
	}
	s := <-subscribed
	if s == nil {
		t.FailNow()
	}
	if err := tr.Publish(testContext(t), topic, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Receive(testContext(t)); err != nil || string(m.Payload) != "hello" {
		t.Fatalf("Receive = %v, %v", m, err)
	}
}
