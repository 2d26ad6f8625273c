package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
)

// Sizes of the burst test.
const (
	burstMessages   = 5000
	burstPublishers = 256 // concurrent Publish calls: many more than the window
	burstTimeout    = 3 * time.Minute
	// burstIdle ends the reception when nothing more arrives.
	burstIdle = 15 * time.Second
)

// TestConcurrentBurstDeliveredOnce: thousands of QoS 2 messages, or QoS 1
// and QoS 2 messages mixed, published concurrently on distinct topics
// through Mosquitto reach a wildcard subscriber exactly once each. Without
// the in-flight window Mosquitto 2.0 accepts only 20 unacknowledged QoS 2
// messages from an MQTT 3.1.1 client and silently drops the QoS 1 and 2
// messages that arrive beyond them, though it acknowledges them all.
func TestConcurrentBurstDeliveredOnce(t *testing.T) {
	// Large queues: the subscriber may lag behind by more than Mosquitto's
	// default of 1000 queued messages per client, a limit of the
	// receiving side that this test is not about. The publishing side
	// keeps Mosquitto's default max_inflight_messages (20).
	m := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{LargeQueues: true})
	t.Run("QoS2", func(t *testing.T) {
		testBurst(t, m.URL(), func(int) transport.QoS { return transport.ExactlyOnce })
	})
	t.Run("QoS1and2", func(t *testing.T) {
		testBurst(t, m.URL(), func(i int) transport.QoS { return transport.AtLeastOnce + transport.QoS(i%2) })
	})
}

// testBurst publishes burstMessages messages, message i with QoS qosOf(i),
// and checks that each arrives once.
func testBurst(t *testing.T, url string, qosOf func(int) transport.QoS) {
	prefix := uniqueTopic(t, "burst")
	sub := subscribe(t, dial(t, dialConfig(url)), prefix+"/+")
	pub := dial(t, dialConfig(url))

	ctx, cancel := context.WithTimeout(t.Context(), burstTimeout)
	defer cancel()
	received := make(chan map[string]int, 1)
	go func() { received <- receiveCounts(ctx, sub, burstMessages) }()
	if err := publishBurst(ctx, pub, prefix, burstMessages, qosOf); err != nil {
		t.Fatal(err)
	}
	counts := <-received
	var missing, repeated []string
	for i := range burstMessages {
		want := burstMessage(prefix, i)
		switch n := counts[want]; {
		case n == 0:
			missing = append(missing, want)
		case n > 1:
			repeated = append(repeated, fmt.Sprintf("%s ×%d", want, n))
		}
	}
	if len(missing) > 0 || len(repeated) > 0 {
		t.Fatalf("of %d messages, %d never arrived (first: %v) and %d arrived more than once (first: %v)",
			burstMessages, len(missing), head(missing), len(repeated), head(repeated))
	}
	expectQuiet(t, sub, "subscriber after the burst")
}

// burstTopic is the topic of message i; its payload is i.
func burstTopic(prefix string, i int) string { return prefix + "/" + strconv.Itoa(i) }

// burstMessage is how receiveCounts names message i: topic and payload.
func burstMessage(prefix string, i int) string {
	return burstTopic(prefix, i) + " " + strconv.Itoa(i)
}

// publishBurst publishes n messages from burstPublishers goroutines,
// message i with QoS qosOf(i).
func publishBurst(ctx context.Context, pub transport.Transport, prefix string, n int, qosOf func(int) transport.QoS) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, burstPublishers)
	for range burstPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := pub.Publish(ctx, burstTopic(prefix, i), []byte(strconv.Itoa(i)), transport.WithQoS(qosOf(i))); err != nil {
					errs <- fmt.Errorf("publishing message %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// receiveCounts receives until n messages have arrived, none arrives for
// burstIdle, or ctx ends, and counts the messages by topic and payload.
func receiveCounts(ctx context.Context, sub transport.Subscription, n int) map[string]int {
	counts := make(map[string]int, n)
	for range n {
		m, err := receiveWithin(ctx, sub, burstIdle)
		if err != nil {
			break
		}
		counts[m.Topic+" "+string(m.Payload)]++
	}
	return counts
}

func receiveWithin(ctx context.Context, sub transport.Subscription, d time.Duration) (*transport.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return sub.Receive(ctx)
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// TestMaxInflightWindow: with Config.MaxInflight 2 and a broker that does
// not answer (stopped with SIGSTOP), two QoS 1 messages go out and a third
// Publish waits for a slot until its context ends, even though the first
// two Publish calls returned (their contexts ended too): their messages
// are still in flight. Once the broker answers, exactly those two arrive,
// and the window admits messages again.
func TestMaxInflightWindow(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	topic := uniqueTopic(t, "window")
	sub := subscribe(t, dial(t, dialConfig(m.URL())), topic)
	cfg := dialConfig(m.URL())
	cfg.MaxInflight = 2
	pub := dial(t, cfg)

	pid := m.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stopping mosquitto: %v", err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resuming mosquitto: %v", err)
			}
		}
	}
	t.Cleanup(resume)
	for _, payload := range []string{"first", "second", "third"} {
		err := publishBriefly(t, pub, topic, payload)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish(%q) to a stopped broker = %v, want a deadline error", payload, err)
		}
	}
	resume()
	expect(t, sub, "subscriber", topic, "first", "second")
	expectQuiet(t, sub, "subscriber, after the messages in flight")
	publish(t, pub, topic, []byte("fourth"), transport.WithQoS(transport.AtLeastOnce))
	expect(t, sub, "subscriber", topic, "fourth")
}

// publishBriefly publishes with QoS 1 and a short deadline.
func publishBriefly(t *testing.T, tr transport.Transport, topic, payload string) error {
	ctx, cancel := context.WithTimeout(t.Context(), quietWait)
	defer cancel()
	return tr.Publish(ctx, topic, []byte(payload), transport.WithQoS(transport.AtLeastOnce))
}
