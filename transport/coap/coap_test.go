package coap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/coap/broker"
)

func opContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func subscribe(t testing.TB, tr transport.Transport, filter string) transport.Subscription {
	t.Helper()
	sub, err := tr.Subscribe(opContext(t), filter)
	if err != nil {
		t.Fatalf("subscribing to %q: %v", filter, err)
	}
	return sub
}

func publish(t testing.TB, tr transport.Transport, topic string, payload []byte, opts ...transport.PublishOption) {
	t.Helper()
	if err := tr.Publish(opContext(t), topic, payload, opts...); err != nil {
		t.Fatalf("publishing %d bytes on %q: %v", len(payload), topic, err)
	}
}

func receive(t testing.TB, sub transport.Subscription) *transport.Message {
	t.Helper()
	m, err := sub.Receive(opContext(t))
	if err != nil {
		t.Fatalf("receiving: %v", err)
	}
	return m
}

// expectQuiet checks that nothing more arrives for a moment.
func expectQuiet(t testing.TB, sub transport.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if m, err := sub.Receive(ctx); err == nil {
		t.Errorf("unexpected message on %q: %d bytes", m.Topic, len(m.Payload))
	}
}

// TestBurst: 200 back-to-back publications reach each of three observers
// completely and in order: one queue per observer.
func TestBurst(t *testing.T) {
	const messages, observers = 200, 3
	b := startBroker(t, nil)
	pub := dial(t, testConfig(b.addr))
	topic := "burst/sensor"
	subs := make([]transport.Subscription, observers)
	for i := range subs {
		subs[i] = subscribe(t, dial(t, testConfig(b.addr)), topic)
	}
	for i := range messages {
		publish(t, pub, topic, fmt.Appendf(nil, "burst-%03d", i))
	}
	for n, sub := range subs {
		for i := range messages {
			m := receive(t, sub)
			if want := fmt.Sprintf("burst-%03d", i); string(m.Payload) != want || m.Topic != topic {
				t.Fatalf("observer %d, message %d: %q on %q, want %q on %q", n, i, m.Payload, m.Topic, want, topic)
			}
		}
		expectQuiet(t, sub)
	}
}

// TestBurstSlowReceiver: an observer that does not read while a burst
// arrives loses nothing: its small receive buffer holds back the
// acknowledgements, and the broker its queue.
func TestBurstSlowReceiver(t *testing.T) {
	const messages = 100
	b := startBroker(t, nil)
	pub := dial(t, testConfig(b.addr))
	cfg := testConfig(b.addr)
	cfg.ReceiveBuffer = 2
	sub := subscribe(t, dial(t, cfg), "slow")
	for i := range messages {
		publish(t, pub, "slow", fmt.Appendf(nil, "%03d", i))
	}
	for i := range messages {
		if m := receive(t, sub); string(m.Payload) != fmt.Sprintf("%03d", i) {
			t.Fatalf("message %d is %q", i, m.Payload)
		}
	}
}

// TestLargePayloadsNeverMixed: two publishers alternate distinct 64 KiB
// payloads on one topic; two subscriptions of one connection (whose
// block-wise transfers share the path) and one on another connection get
// every payload intact, as sent.
func TestLargePayloadsNeverMixed(t *testing.T) {
	const rounds, size = 8, 64 << 10
	b := startBroker(t, nil)
	topic := "large/blobs"
	shared := dial(t, testConfig(b.addr))
	subs := []transport.Subscription{
		subscribe(t, shared, topic),
		subscribe(t, shared, topic),
		subscribe(t, dial(t, testConfig(b.addr)), "large/+"),
	}
	pubs := []transport.Transport{dial(t, testConfig(b.addr)), dial(t, testConfig(b.addr))}

	sent := make(map[string]bool)
	var sentMu sync.Mutex
	var wg sync.WaitGroup
	for p, pub := range pubs {
		wg.Go(func() {
			for i := range rounds {
				payload := make([]byte, size)
				_, _ = rand.Read(payload)
				copy(payload, fmt.Sprintf("publisher %d round %d", p, i))
				sentMu.Lock()
				sent[string(payload)] = true
				sentMu.Unlock()
				publish(t, pub, topic, payload)
			}
		})
	}
	wg.Wait()
	for n, sub := range subs {
		got := make(map[string]bool)
		for range rounds * len(pubs) {
			m := receive(t, sub)
			switch {
			case m.Topic != topic:
				t.Errorf("subscription %d: message on %q", n, m.Topic)
			case !sent[string(m.Payload)]:
				t.Fatalf("subscription %d: %d bytes starting %q were never sent (mixed blocks?)", n, len(m.Payload), m.Payload[:min(24, len(m.Payload))])
			case got[string(m.Payload)]:
				t.Errorf("subscription %d: duplicate %q", n, m.Payload[:24])
			}
			got[string(m.Payload)] = true
		}
		expectQuiet(t, sub)
	}
}

// TestBlockBoundaries: payloads around block boundaries arrive intact,
// whichever side has the smaller block size.
func TestBlockBoundaries(t *testing.T) {
	for _, sizes := range []struct{ broker, client int }{{1024, 1024}, {1024, 256}, {64, 1024}} {
		t.Run(fmt.Sprintf("broker %d client %d", sizes.broker, sizes.client), func(t *testing.T) {
			b := startBroker(t, &broker.Options{BlockSize: sizes.broker})
			cfg := testConfig(b.addr)
			cfg.BlockSize = sizes.client
			cfg.OnError = func(err error) { t.Log(err) }
			tr := dial(t, cfg)
			sub := subscribe(t, tr, "blocks")
			for _, n := range []int{63, 64, 65, 255, 256, 257, 1023, 1024, 1025, 2048, 2049} {
				payload := make([]byte, n)
				_, _ = rand.Read(payload)
				publish(t, tr, "blocks", payload)
				if m := receive(t, sub); !bytes.Equal(m.Payload, payload) {
					t.Fatalf("%d bytes sent, %d received (or different)", n, len(m.Payload))
				}
			}
		})
	}
}

// TestTopicMapping: topic levels travel byte for byte, whatever they hold,
// and a level CoAP cannot carry is refused.
func TestTopicMapping(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.addr)
	cfg.OnError = func(err error) { t.Logf("adapter: %v", err) }
	tr := dial(t, cfg)
	topics := []string{
		"a/b/c",
		"with space/100%/q?x=1&y=z;",
		"dots/./../x",
		"empty//level",
		"/leading",
		"trailing/",
		"ünïcode/温度",
		"e4/0123456789abcdef0123456789abcdef",
	}
	for _, topic := range topics {
		t.Logf("topic %q", topic)
		sub := subscribe(t, tr, topic)
		publish(t, tr, topic, []byte(topic))
		if m := receive(t, sub); m.Topic != topic || string(m.Payload) != topic {
			t.Errorf("published on %q, received %q on %q", topic, m.Payload, m.Topic)
		}
		if err := sub.Unsubscribe(opContext(t)); err != nil {
			t.Errorf("unsubscribing from %q: %v", topic, err)
		}
	}
	long := "x/" + strings.Repeat("l", 256)
	if err := tr.Publish(opContext(t), long, []byte("x")); !errors.Is(err, transport.ErrInvalidTopic) {
		t.Errorf("publishing on a 256-byte level = %v, want %v", err, transport.ErrInvalidTopic)
	}
	if _, err := tr.Subscribe(opContext(t), long); !errors.Is(err, transport.ErrInvalidTopic) {
		t.Errorf("subscribing to a 256-byte level = %v, want %v", err, transport.ErrInvalidTopic)
	}
}

// TestWildcardConcreteTopic: a wildcard observation gets each message with
// its concrete topic, and sees nothing of other topics.
func TestWildcardConcreteTopic(t *testing.T) {
	b := startBroker(t, nil)
	tr := dial(t, testConfig(b.addr))
	sub := subscribe(t, tr, "home/+/temp")
	all := subscribe(t, tr, "home/#")
	for _, topic := range []string{"home/kitchen/temp", "home/kitchen/humidity", "office/desk/temp", "home/attic/temp"} {
		publish(t, tr, topic, []byte(topic))
	}
	for _, want := range []string{"home/kitchen/temp", "home/attic/temp"} {
		if m := receive(t, sub); m.Topic != want || string(m.Payload) != want {
			t.Errorf("home/+/temp got %q on %q, want %q", m.Payload, m.Topic, want)
		}
	}
	expectQuiet(t, sub)
	for _, want := range []string{"home/kitchen/temp", "home/kitchen/humidity", "home/attic/temp"} {
		if m := receive(t, all); m.Topic != want {
			t.Errorf("home/# got %q, want %q", m.Topic, want)
		}
	}
}

// TestAtMostOnce: a QoS 0 publication (non-confirmable) arrives, and a
// large one still goes block-wise, confirmable.
func TestAtMostOnce(t *testing.T) {
	b := startBroker(t, nil)
	tr := dial(t, testConfig(b.addr))
	sub := subscribe(t, tr, "qos0")
	large := bytes.Repeat([]byte("L"), 5000)
	publish(t, tr, "qos0", []byte("small"), transport.WithQoS(transport.AtMostOnce))
	publish(t, tr, "qos0", large, transport.WithQoS(transport.AtMostOnce))
	if m := receive(t, sub); string(m.Payload) != "small" {
		t.Errorf("got %q, want %q", m.Payload, "small")
	}
	if m := receive(t, sub); !bytes.Equal(m.Payload, large) {
		t.Errorf("got %d bytes, want the %d-byte payload", len(m.Payload), len(large))
	}
}

// TestTooLarge: a payload over Config.MaxPayload is refused before sending.
func TestTooLarge(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.addr)
	cfg.MaxPayload = 1000
	tr := dial(t, cfg)
	if err := tr.Publish(opContext(t), "big", make([]byte, 1001)); !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("Publish of 1001 bytes = %v, want %v", err, transport.ErrTooLarge)
	}
}

// TestBrokerRefusesLarge: the broker answers 4.13 to a publication over
// its MaxPayload, and the adapter reports the status.
func TestBrokerRefusesLarge(t *testing.T) {
	b := startBroker(t, &broker.Options{MaxPayload: 2000})
	tr := dial(t, testConfig(b.addr))
	sub := subscribe(t, tr, "big")
	publish(t, tr, "big", make([]byte, 2000))
	err := tr.Publish(opContext(t), "big", make([]byte, 2500))
	var status *coap.StatusError
	if !errors.As(err, &status) || status.Code != codes.RequestEntityTooLarge {
		t.Fatalf("publishing 2500 bytes to a broker limited to 2000 = %v, want 4.13", err)
	}
	if m := receive(t, sub); len(m.Payload) != 2000 {
		t.Errorf("got %d bytes, want 2000", len(m.Payload))
	}
	expectQuiet(t, sub)
}

// TestIdleObserverKept: an observer that sends nothing for many idle
// periods of the broker (no keepalive, no refresh on its side) still gets
// messages: the broker pings it instead of dropping it (go-coap's default
// would after 16 s).
func TestIdleObserverKept(t *testing.T) {
	b := startBroker(t, &broker.Options{IdleTimeout: 400 * time.Millisecond})
	cfg := testConfig(b.addr)
	cfg.KeepAlive, cfg.Refresh = -1, -1
	sub := subscribe(t, dial(t, cfg), "idle")
	time.Sleep(3 * time.Second) // several idle periods and pings
	publish(t, dial(t, testConfig(b.addr)), "idle", []byte("still there"))
	if m := receive(t, sub); string(m.Payload) != "still there" {
		t.Errorf("got %q", m.Payload)
	}
}

// TestDeadObserverDropped: the observations of a client that vanished
// without deregistering end once it stops answering the broker's pings.
func TestDeadObserverDropped(t *testing.T) {
	b := startBroker(t, &broker.Options{IdleTimeout: 400 * time.Millisecond})
	cfg := testConfig(b.addr)
	cfg.KeepAlive, cfg.Refresh = -1, -1
	conn := dialApp(t, b.addr)
	tr, err := coap.FromConn(conn, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, tr, "dead/1")
	subscribe(t, tr, "dead/2")
	if n := b.current().Observers(); n != 2 {
		t.Fatalf("%d observers, want 2", n)
	}
	_ = conn.Close() // no deregistration: the socket is just gone
	deadline := time.Now().Add(testTimeout)
	for b.current().Observers() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d observers left %v after their client vanished", b.current().Observers(), testTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = tr.Close()
}

// TestUnsubscribeDeregisters: Unsubscribe and Close end the observations
// at the broker too.
func TestUnsubscribeDeregisters(t *testing.T) {
	b := startBroker(t, nil)
	tr := dial(t, testConfig(b.addr))
	sub := subscribe(t, tr, "dereg/a")
	subscribe(t, tr, "dereg/b")
	if n := b.current().Observers(); n != 2 {
		t.Fatalf("%d observers, want 2", n)
	}
	if err := sub.Unsubscribe(opContext(t)); err != nil {
		t.Fatal(err)
	}
	if n := b.current().Observers(); n != 1 {
		t.Errorf("%d observers after Unsubscribe, want 1", n)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if n := b.current().Observers(); n != 0 {
		t.Errorf("%d observers after Close, want 0", n)
	}
}

// TestRefreshKeepsDelivering: renewing observations every 100 ms while a
// stream of messages flows loses and duplicates nothing.
func TestRefreshKeepsDelivering(t *testing.T) {
	const messages = 150
	b := startBroker(t, nil)
	cfg := testConfig(b.addr)
	cfg.Refresh = 100 * time.Millisecond
	sub := subscribe(t, dial(t, cfg), "refresh")
	pub := dial(t, testConfig(b.addr))
	for i := range messages {
		publish(t, pub, "refresh", fmt.Appendf(nil, "%03d", i))
		time.Sleep(2 * time.Millisecond)
	}
	for i := range messages {
		if m := receive(t, sub); string(m.Payload) != fmt.Sprintf("%03d", i) {
			t.Fatalf("message %d is %q", i, m.Payload)
		}
	}
	expectQuiet(t, sub)
}
