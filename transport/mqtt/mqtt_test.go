package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

// TestQoSLevels: a message published with each QoS round-trips through
// Mosquitto, and an invalid QoS is refused before anything is sent.
func TestQoSLevels(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	pub, subConn := dial(t, dialConfig(m.URL())), dial(t, dialConfig(m.URL()))
	for _, qos := range []transport.QoS{transport.AtMostOnce, transport.AtLeastOnce, transport.ExactlyOnce} {
		t.Run(fmt.Sprintf("QoS%d", qos), func(t *testing.T) {
			topic := uniqueTopic(t, "qos")
			sub := subscribe(t, subConn, topic)
			payload := fmt.Sprintf("qos %d", qos)
			publish(t, pub, topic, []byte(payload), transport.WithQoS(qos))
			expect(t, sub, "subscriber", topic, payload)
		})
	}
	err := pub.Publish(opContext(t), uniqueTopic(t), []byte("x"), transport.WithQoS(3))
	if err == nil {
		t.Error("Publish with QoS 3 succeeded, want an error")
	}
}

// TestDefaultQoS: Config.DefaultQoS applies to a Publish without WithQoS;
// an invalid one is refused by Dial.
func TestDefaultQoS(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	bad := transport.QoS(3)
	cfg := dialConfig(m.URL())
	cfg.DefaultQoS = &bad
	if tr, err := mqtt.Dial(opContext(t), cfg); err == nil {
		_ = tr.Close()
		t.Fatal("Dial with DefaultQoS 3 succeeded, want an error")
	}
	zero := transport.AtMostOnce
	cfg.DefaultQoS = &zero
	pub := dial(t, cfg)
	topic := uniqueTopic(t)
	sub := subscribe(t, dial(t, dialConfig(m.URL())), topic)
	publish(t, pub, topic, []byte("qos 0 by default"))
	expect(t, sub, "subscriber", topic, "qos 0 by default")
}

// TestRetain: a retained message reaches a subscriber that arrives later.
func TestRetain(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	topic := uniqueTopic(t, "retained")
	publish(t, dial(t, dialConfig(m.URL())), topic, []byte("kept"), transport.WithRetain())
	sub := subscribe(t, dial(t, dialConfig(m.URL())), topic)
	expect(t, sub, "late subscriber", topic, "kept")
	// The broker sends retained messages again on every SUBSCRIBE: the
	// first connection of Dial must not subscribe a second time.
	expectQuiet(t, sub, "late subscriber, after the retained message")
}

// TestOverlappingFilters: subscriptions of one connection with equal,
// nested and partially overlapping filters each get exactly the messages
// their filter matches, once, on brokers that send one copy per matching
// subscription (Mosquitto with allow_duplicate_messages) and one per
// client (Mosquitto 2.0's default, mochi-mqtt); and they
// keep doing so as subscriptions come and go.
func TestOverlappingFilters(t *testing.T) {
	t.Run("Mosquitto", func(t *testing.T) {
		testOverlappingFilters(t, testbroker.StartMosquitto(t, nil).URL())
	})
	t.Run("MosquittoDuplicates", func(t *testing.T) {
		m := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{DuplicateMessages: true})
		testOverlappingFilters(t, m.URL())
	})
	t.Run("Embedded", func(t *testing.T) {
		b, err := mqttbroker.Start("127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		testOverlappingFilters(t, b.URL())
	})
}

func testOverlappingFilters(t *testing.T, url string) {
	p := uniqueTopic(t)
	pub, conn := dial(t, dialConfig(url)), dial(t, dialConfig(url))
	filters := []string{p + "/#", p + "/a/x", p + "/a/x", p + "/+/x", p + "/a/+"}
	subs := make([]transport.Subscription, len(filters))
	for i, f := range filters {
		subs[i] = subscribe(t, conn, f)
	}
	topics := []string{p + "/a/x", p + "/b/x", p + "/a/y", p + "/c"}
	check := func(round string, live []int) {
		t.Helper()
		for _, topic := range topics {
			publish(t, pub, topic, []byte(round+" "+topic))
		}
		for _, i := range live {
			what := fmt.Sprintf("%s: subscriber %d of %q", round, i, filters[i])
			for _, topic := range topics {
				if transport.Match(filters[i], topic) {
					expect(t, subs[i], what, topic, round+" "+topic)
				}
			}
			expectQuiet(t, subs[i], what)
		}
	}
	check("all", []int{0, 1, 2, 3, 4})

	// Dropping the widest filter narrows the broker subscription.
	if err := subs[0].Unsubscribe(opContext(t)); err != nil {
		t.Fatal(err)
	}
	check("without #", []int{1, 2, 3, 4})

	// Dropping the partial overlaps leaves the duplicates.
	for _, i := range []int{3, 4, 1} {
		if err := subs[i].Unsubscribe(opContext(t)); err != nil {
			t.Fatal(err)
		}
	}
	check("one left", []int{2})
}

// TestPersistentSession: with CleanSession false and a fixed client id,
// QoS 1 messages published while the client was away are delivered when
// it comes back, in order.
func TestPersistentSession(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	topic := uniqueTopic(t, "persistent")
	cfg := dialConfig(m.URL())
	cfg.ClientID = "e4kit-persist-" + randomHex(4)
	cfg.PersistentSession = true

	first := dial(t, cfg)
	subscribe(t, first, topic)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, dialConfig(m.URL()))
	want := []string{"while away 1", "while away 2", "while away 3"}
	for _, p := range want {
		publish(t, pub, topic, []byte(p), transport.WithQoS(transport.AtLeastOnce))
	}
	second := dial(t, cfg)
	sub := subscribe(t, second, topic)
	expect(t, sub, "returning persistent session", topic, want...)
	publish(t, pub, topic, []byte("after return"))
	expect(t, sub, "returning persistent session", topic, "after return")
	expectQuiet(t, sub, "returning persistent session")
}

// TestSlowConsumer: a subscription whose consumer does not read keeps
// QueueSize messages and drops (and counts) the rest, without holding up
// another subscription of the same connection.
func TestSlowConsumer(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	cfg := dialConfig(m.URL())
	cfg.QueueSize = 5
	conn, pub := dial(t, cfg), dial(t, dialConfig(m.URL()))
	slow, marker := uniqueTopic(t, "slow"), uniqueTopic(t, "marker")
	slowSub, markerSub := subscribe(t, conn, slow), subscribe(t, conn, marker)

	var want []string
	for i := range 20 {
		p := fmt.Sprintf("m%02d", i)
		want = append(want, p)
		publish(t, pub, slow, []byte(p), transport.WithQoS(transport.AtLeastOnce))
	}
	// One publisher, one subscriber connection: the marker arrives after
	// the 20 messages were offered to slowSub.
	publish(t, pub, marker, []byte("done"), transport.WithQoS(transport.AtLeastOnce))
	expect(t, markerSub, "marker", marker, "done")

	expect(t, slowSub, "slow subscriber", slow, want[:5]...)
	expectQuiet(t, slowSub, "slow subscriber")
	if got := slowSub.(*mqtt.Subscription).Dropped(); got != 15 {
		t.Errorf("Dropped() = %d, want 15", got)
	}
}

// TestDialErrors: bad configurations and unreachable brokers fail Dial.
func TestDialErrors(t *testing.T) {
	free := testbroker.FreePort(t, "tcp")
	for name, cfg := range map[string]mqtt.Config{
		"no broker":   {},
		"bad scheme":  {Brokers: []string{"http://127.0.0.1:1883"}},
		"no host":     {Brokers: []string{"tcp://"}},
		"unreachable": {Brokers: []string{fmt.Sprintf("tcp://127.0.0.1:%d", free)}},
	} {
		t.Run(name, func(t *testing.T) {
			if tr, err := mqtt.Dial(opContext(t), cfg); err == nil {
				_ = tr.Close()
				t.Fatal("Dial succeeded, want an error")
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		m := testbroker.StartMosquitto(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if tr, err := mqtt.Dial(ctx, dialConfig(m.URL())); !errors.Is(err, context.Canceled) {
			if err == nil {
				_ = tr.Close()
			}
			t.Fatalf("Dial with a cancelled ctx = %v, want %v", err, context.Canceled)
		}
	})
}

// TestSecondBrokerURL: Dial falls through to the next URL when the first
// broker is down.
func TestSecondBrokerURL(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	down := fmt.Sprintf("tcp://127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	cfg := dialConfig(down)
	cfg.Brokers = append(cfg.Brokers, m.URL())
	tr := dial(t, cfg)
	topic := uniqueTopic(t)
	sub := subscribe(t, tr, topic)
	publish(t, tr, topic, []byte("via the second URL"))
	expect(t, sub, "subscriber", topic, "via the second URL")
}
