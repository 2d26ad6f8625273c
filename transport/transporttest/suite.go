package transporttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

// conformanceTest is one test of the suite.
type conformanceTest struct {
	name string
	run  func(e *env)
	// restarts is set for the tests that restart the broker, which the
	// harnesses of one adapter may share: they run alone.
	restarts bool
}

// conformanceTests lists the suite; RunConformanceTests runs the tests
// that restart the broker first.
var conformanceTests = []conformanceTest{
	{name: "RoundTrip", run: testRoundTrip},
	{name: "AllByteValues", run: testAllByteValues},
	{name: "EmptyPayload", run: testEmptyPayload},
	{name: "LargePayload", run: testLargePayload},
	{name: "TopicIsolation", run: testTopicIsolation},
	{name: "FanOut", run: testFanOut},
	{name: "WildcardSingleLevel", run: testWildcardSingleLevel},
	{name: "WildcardMultiLevel", run: testWildcardMultiLevel},
	{name: "OrderPerTopic", run: testOrderPerTopic},
	{name: "Unsubscribe", run: testUnsubscribe},
	{name: "ContextCancellation", run: testContextCancellation},
	{name: "Closed", run: testClosed},
	{name: "ConcurrentPublishers", run: testConcurrentPublishers},
	{name: "ConcurrentReceivers", run: testConcurrentReceivers},
	{name: "InvalidTopics", run: testInvalidTopics},
	{name: "BrokerRestart", run: testBrokerRestart, restarts: true},
	{name: "ConnectionEvents", run: testConnectionEvents, restarts: true},
}

// RunConformanceTests runs the suite against the adapter behind newHarness,
// each test as a subtest with a fresh harness and topics of its own. The
// tests that restart the broker run first, one after the other; the others
// then run in parallel within the subtest "parallel" (no two share a
// topic), which RunConformanceTests waits for, so that the caller may stop
// the broker as soon as it returns. Tests of features the adapter lacks
// (see Features) are skipped.
//
// No test publishes the same payload twice on one topic: under WithE4 the
// second copy would be byte-for-byte the first (AES-SIV is deterministic and
// the E4 timestamp counts seconds), and the receiver's replay cache would
// rightly drop it.
func RunConformanceTests(t *testing.T, newHarness HarnessMaker) {
	for _, ct := range conformanceTests {
		if ct.restarts {
			t.Run(ct.name, func(t *testing.T) { ct.run(newEnv(t, newHarness)) })
		}
	}
	t.Run("parallel", func(t *testing.T) {
		for _, ct := range conformanceTests {
			if !ct.restarts {
				t.Run(ct.name, func(t *testing.T) {
					t.Parallel()
					ct.run(newEnv(t, newHarness))
				})
			}
		}
	})
}

// testRoundTrip: a message arrives once, on its topic, with its payload, and
// the publisher may reuse its buffer as soon as Publish returns.
func testRoundTrip(e *env) {
	topic := e.topic("round-trip")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	want := []byte("hello from e4kit")
	buf := slices.Clone(want)
	e.publish(pub, topic, buf)
	clear(buf)
	e.expectMessages(sub, "round trip", topic, [][]byte{want}, true)
	e.expectQuiet("round trip", sub)
}

// testAllByteValues: payloads are opaque bytes, NUL and 0xFF included.
func testAllByteValues(e *env) {
	topic := e.topic("bytes")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	reversed := slices.Clone(all)
	slices.Reverse(reversed)
	payloads := [][]byte{all, reversed, {0}, {0xff}, {0, 0}, []byte("\r\n")}
	for _, p := range payloads {
		e.publish(pub, topic, p)
	}
	e.expectMessages(sub, "byte values", topic, payloads, e.features.OrderedPerTopic)
}

// testEmptyPayload: a message may carry no bytes at all. One empty message
// only: E4 protection is deterministic within a second, so a second empty
// message would be a replay of the first.
func testEmptyPayload(e *env) {
	if !e.features.EmptyPayload {
		e.t.Skip("transporttest: the adapter does not carry empty payloads (Features.EmptyPayload)")
	}
	topic := e.topic("empty")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	e.publish(pub, topic, nil)
	e.publish(pub, topic, []byte("after empty"))
	e.expectMessages(sub, "empty payload", topic, [][]byte{{}, []byte("after empty")}, e.features.OrderedPerTopic)
}

// testLargePayload: a payload of Features.MaxPayload bytes arrives intact.
func testLargePayload(e *env) {
	topic := e.topic("large")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	want := make([]byte, e.features.MaxPayload)
	_, _ = rand.Read(want)
	e.publish(pub, topic, want)
	m := e.receive(sub, "large payload")
	if m.Topic != topic {
		e.t.Errorf("large payload on topic %q, want %q", m.Topic, topic)
	}
	if !bytes.Equal(m.Payload, want) {
		e.t.Errorf("large payload: got %d bytes, want %d; first difference at %d",
			len(m.Payload), len(want), firstDifference(m.Payload, want))
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// testTopicIsolation: a subscription gets its topic only, not a topic that
// shares a prefix with it nor one a level deeper.
func testTopicIsolation(e *env) {
	a, ab, deeper := e.topic("iso", "a"), e.topic("iso", "ab"), e.topic("iso", "a", "b")
	e.prepare(a, ab, deeper)
	pub := e.transport()
	subA, subAB := e.subscribe(e.transport(), a), e.subscribe(e.transport(), ab)

	e.publish(pub, ab, []byte("for ab"))
	e.publish(pub, deeper, []byte("for a/b"))
	e.publish(pub, a, []byte("for a"))
	e.expectMessages(subA, "subscriber of "+a, a, [][]byte{[]byte("for a")}, true)
	e.expectMessages(subAB, "subscriber of "+ab, ab, [][]byte{[]byte("for ab")}, true)
	e.expectQuiet("isolated subscribers", subA, subAB)
}

// testFanOut: every subscriber of a topic gets every message.
func testFanOut(e *env) {
	topic := e.topic("fan-out")
	e.prepare(topic)
	pub := e.transport()
	subs := make([]transport.Subscription, 3)
	for i := range subs {
		subs[i] = e.subscribe(e.transport(), topic)
	}
	payloads := numbered("fan-out", 5)
	for _, p := range payloads {
		e.publish(pub, topic, p)
	}
	for i, sub := range subs {
		e.expectMessages(sub, fmt.Sprintf("subscriber %d", i+1), topic, payloads, e.features.OrderedPerTopic)
	}
	e.expectQuiet("fan-out subscribers", subs...)
}

// numbered returns n distinct payloads "<prefix>-000", "<prefix>-001"...
func numbered(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%03d", prefix, i)
	}
	return out
}

// testWildcardSingleLevel: "+" matches one level, and the message carries
// the concrete topic, not the filter.
func testWildcardSingleLevel(e *env) {
	if !e.features.Wildcards {
		e.t.Skip("transporttest: no wildcards")
	}
	matching := []string{e.topic("plus", "room1", "temp"), e.topic("plus", "room2", "temp")}
	other := []string{e.topic("plus", "room1", "x", "temp"), e.topic("plus", "room1", "humidity")}
	e.expectWildcard(e.topic("plus", "+", "temp"), matching, other)
}

// testWildcardMultiLevel: "#" matches any number of levels, zero included.
func testWildcardMultiLevel(e *env) {
	if !e.features.Wildcards {
		e.t.Skip("transporttest: no wildcards")
	}
	matching := []string{e.topic("hash"), e.topic("hash", "a"), e.topic("hash", "a", "b", "c")}
	other := []string{e.topic("hashx", "a"), e.topic("other")}
	e.expectWildcard(e.topic("hash", "#"), matching, other)
}

// expectWildcard publishes on each topic once, the non-matching ones first,
// and checks that a subscriber of filter gets exactly the matching ones,
// each under its concrete topic.
func (e *env) expectWildcard(filter string, matching, other []string) {
	e.prepare(append(slices.Clone(matching), other...)...)
	pub, sub := e.transport(), e.subscribe(e.transport(), filter)
	for _, topic := range append(slices.Clone(other), matching...) {
		e.publish(pub, topic, []byte(topic))
	}
	missing := make(map[string]bool)
	for _, topic := range matching {
		missing[topic] = true
	}
	for range matching {
		m := e.receive(sub, "subscriber of "+filter)
		if m.Topic != string(m.Payload) {
			e.t.Errorf("message published on %q arrived with topic %q (the concrete topic is required)", m.Payload, m.Topic)
		}
		if !missing[string(m.Payload)] {
			e.t.Errorf("filter %q received the message of %q, which it does not match or already got", filter, m.Payload)
		}
		delete(missing, string(m.Payload))
	}
	for topic := range missing {
		e.t.Errorf("filter %q did not receive the message of %q", filter, topic)
	}
	e.expectQuiet("subscriber of "+filter, sub)
}

// testOrderPerTopic: one publisher's messages on one topic keep their order.
func testOrderPerTopic(e *env) {
	if !e.features.OrderedPerTopic {
		e.t.Skip("transporttest: the adapter does not promise order per topic")
	}
	topic := e.topic("order")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)
	payloads := numbered("order", 100)
	for _, p := range payloads {
		e.publish(pub, topic, p, transport.WithQoS(transport.AtLeastOnce))
	}
	e.expectMessages(sub, "ordered", topic, payloads, true)
}

// testUnsubscribe: Unsubscribe ends pending and later receives with
// ErrClosed, stops delivery, and leaves other subscriptions of the same
// connection alone.
func testUnsubscribe(e *env) {
	topic, other := e.topic("unsub"), e.topic("unsub-other")
	e.prepare(topic, other)
	pub, conn := e.transport(), e.transport()
	sub, kept := e.subscribe(conn, topic), e.subscribe(conn, other)
	// A subscriber on another connection proves the later message was
	// really published, so the silence of sub means something.
	witness := e.subscribe(e.transport(), topic)

	e.publish(pub, topic, []byte("before"))
	e.expectMessages(sub, "before Unsubscribe", topic, [][]byte{[]byte("before")}, true)

	pending := receiveAsync(e.t.Context(), sub)
	time.Sleep(50 * time.Millisecond) // most likely blocked in Receive by now; either way ErrClosed is due
	if err := sub.Unsubscribe(e.opContext()); err != nil {
		e.t.Fatalf("Unsubscribe: %v", err)
	}
	e.expectClosed(pending, "Receive pending during Unsubscribe")
	if err := sub.Unsubscribe(e.opContext()); err != nil && !errors.Is(err, transport.ErrClosed) {
		e.t.Errorf("second Unsubscribe = %v, want nil (idempotent)", err)
	}

	e.publish(pub, topic, []byte("after"))
	e.publish(pub, other, []byte("other"))
	e.expectMessages(witness, "witness", topic, [][]byte{[]byte("before"), []byte("after")}, e.features.OrderedPerTopic)
	e.expectMessages(kept, "other subscription of the same connection", other, [][]byte{[]byte("other")}, true)
	ctx, cancel := context.WithTimeout(e.t.Context(), quietWait)
	defer cancel()
	e.expectClosed(receiveAsync(ctx, sub), "Receive after Unsubscribe")
}

// expectClosed waits for a background Receive and checks it ended with
// ErrClosed.
func (e *env) expectClosed(pending <-chan received, what string) {
	e.t.Helper()
	select {
	case r := <-pending:
		switch {
		case r.err == nil:
			e.t.Errorf("%s delivered %s on %q, want %v", what, describe(r.msg.Payload), r.msg.Topic, transport.ErrClosed)
		case !errors.Is(r.err, transport.ErrClosed):
			e.t.Errorf("%s = %v, want %v", what, r.err, transport.ErrClosed)
		}
	case <-time.After(opTimeout):
		e.t.Errorf("%s still blocked after %v, want %v", what, opTimeout, transport.ErrClosed)
	}
}

// testContextCancellation: Receive returns ctx.Err() when its ctx ends,
// Publish refuses an ended ctx, and the subscription outlives both.
func testContextCancellation(e *env) {
	topic, elsewhere := e.topic("ctx"), e.topic("ctx-cancelled")
	e.prepare(topic, elsewhere)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	cancelled, cancel := context.WithCancel(e.t.Context())
	cancel()
	if r := e.await(receiveAsync(cancelled, sub), "Receive with a cancelled ctx"); !errors.Is(r.err, context.Canceled) {
		e.t.Errorf("Receive with a cancelled ctx = %v, want %v", r.err, context.Canceled)
	}
	expiring, cancelExpiring := context.WithTimeout(e.t.Context(), 100*time.Millisecond)
	defer cancelExpiring()
	if r := e.await(receiveAsync(expiring, sub), "Receive with an expiring ctx"); !errors.Is(r.err, context.DeadlineExceeded) {
		e.t.Errorf("Receive with an expiring ctx = %v, want %v", r.err, context.DeadlineExceeded)
	}
	// Published elsewhere: an adapter may have sent it anyway.
	if err := pub.Publish(cancelled, elsewhere, []byte("cancelled")); err == nil {
		e.t.Errorf("Publish with a cancelled ctx succeeded, want an error")
	}

	e.publish(pub, topic, []byte("still subscribed"))
	e.expectMessages(sub, "after cancelled receives", topic, [][]byte{[]byte("still subscribed")}, true)
}

// testClosed: Close ends subscriptions, every later call returns ErrClosed,
// and a second Close is harmless.
func testClosed(e *env) {
	topic := e.topic("closed")
	e.prepare(topic)
	tr := e.transport()
	sub := e.subscribe(tr, topic)

	pending := receiveAsync(e.t.Context(), sub)
	time.Sleep(50 * time.Millisecond) // most likely blocked in Receive by now; either way ErrClosed is due
	if err := tr.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.expectClosed(pending, "Receive pending during Close")
	if err := tr.Close(); err != nil && !errors.Is(err, transport.ErrClosed) {
		e.t.Errorf("second Close = %v, want nil or %v", err, transport.ErrClosed)
	}
	if err := tr.Publish(e.opContext(), topic, []byte("late")); !errors.Is(err, transport.ErrClosed) {
		e.t.Errorf("Publish after Close = %v, want %v", err, transport.ErrClosed)
	}
	if s, err := tr.Subscribe(e.opContext(), topic); !errors.Is(err, transport.ErrClosed) {
		e.t.Errorf("Subscribe after Close = %v, want %v", err, transport.ErrClosed)
		if err == nil {
			_ = s.Unsubscribe(e.opContext())
		}
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), quietWait)
	defer cancel()
	e.expectClosed(receiveAsync(ctx, sub), "Receive after Close")
	if err := sub.Unsubscribe(e.opContext()); err != nil && !errors.Is(err, transport.ErrClosed) {
		e.t.Errorf("Unsubscribe after Close = %v, want nil or %v", err, transport.ErrClosed)
	}
}

// testConcurrentPublishers: goroutines sharing one connection publish at
// once; every message arrives exactly once.
func testConcurrentPublishers(e *env) {
	const publishers, each = 8, 50
	topic := e.topic("concurrent")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	var want [][]byte
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		payloads := numbered(fmt.Sprintf("publisher%d", p), each)
		want = append(want, payloads...)
		wg.Go(func() {
			for _, payload := range payloads {
				ctx, cancel := context.WithTimeout(e.t.Context(), opTimeout)
				err := pub.Publish(ctx, topic, payload)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("publishing %s: %w", payload, err)
					return
				}
			}
		})
	}
	// Receive while they publish: an adapter may have bounded buffers.
	e.expectMessages(sub, "concurrent publishers", topic, want, false)
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Error(err)
	}
	e.expectQuiet("concurrent publishers", sub)
}

// testConcurrentReceivers: goroutines receiving from one subscription share
// its messages; each message goes to exactly one of them.
func testConcurrentReceivers(e *env) {
	const receivers, messages = 4, 40
	topic := e.topic("receivers")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)

	ctx, stop := context.WithCancel(e.t.Context())
	defer stop()
	got := make(chan received)
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			for {
				m, err := sub.Receive(ctx)
				if err != nil && ctx.Err() != nil {
					return // stopped by the test
				}
				got <- received{m, err}
				if err != nil {
					return
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	want := numbered("receivers", messages)
	for _, p := range want {
		e.publish(pub, topic, p)
	}
	counts := make(map[string]int)
	count := func(r received) {
		if r.err != nil {
			e.t.Errorf("concurrent Receive: %v", r.err)
			return
		}
		counts[string(r.msg.Payload)]++
	}
	timeout := time.After(opTimeout)
	for total := 0; total < messages; total++ {
		select {
		case r := <-got:
			count(r)
		case <-timeout:
			e.t.Errorf("concurrent receivers got %d of %d messages", total, messages)
			total = messages
		}
	}
	// Keep receiving a while, so that duplicates show up, then stop the
	// receivers and count what they still had in hand.
	quiet := time.After(quietWait)
	for waiting := true; waiting; {
		select {
		case r := <-got:
			count(r)
		case <-quiet:
			waiting = false
		}
	}
	stop()
	giveUp := time.After(ctxGrace)
	for running := true; running; {
		select {
		case r := <-got:
			count(r)
		case <-finished:
			running = false
		case <-giveUp:
			e.t.Fatalf("concurrent receivers still blocked %v after their ctx ended", ctxGrace)
		}
	}
	for _, p := range want {
		if n := counts[string(p)]; n != 1 {
			e.t.Errorf("%s received %d times, want once", p, n)
		}
	}
}

// testInvalidTopics: wildcards cannot be published to, and malformed
// filters are refused, both with ErrInvalidTopic.
func testInvalidTopics(e *env) {
	tr := e.transport()
	for _, topic := range []string{"", e.topic("x", "+"), e.topic("#"), e.topic("a+b")} {
		if err := tr.Publish(e.opContext(), topic, []byte("x")); !errors.Is(err, transport.ErrInvalidTopic) {
			e.t.Errorf("Publish on %q = %v, want %v", topic, err, transport.ErrInvalidTopic)
		}
	}
	filters := []string{"", e.topic("#", "x"), e.topic("a+")}
	if !e.features.Wildcards {
		filters = append(filters, e.topic("+"), e.topic("#"))
	}
	for _, filter := range filters {
		s, err := tr.Subscribe(e.opContext(), filter)
		if !errors.Is(err, transport.ErrInvalidTopic) {
			e.t.Errorf("Subscribe to %q = %v, want %v", filter, err, transport.ErrInvalidTopic)
		}
		if err == nil {
			_ = s.Unsubscribe(e.opContext())
		}
	}
}

// Bounds of the broker restart test.
const (
	restartTimeout = 2 * time.Minute  // RestartBroker itself
	resumeTimeout  = 30 * time.Second // until delivery resumes
	// publishRetryTimeout bounds each Publish while the adapter may still
	// be reconnecting (Publish then blocks until it can hand over).
	publishRetryTimeout = 3 * time.Second
)

// testBrokerRestart: a subscription made before a broker restart delivers
// again afterwards, without the application subscribing again.
func testBrokerRestart(e *env) {
	if !e.features.BrokerRestart {
		e.t.Skip("transporttest: the harness cannot restart the broker")
	}
	topic := e.topic("restart")
	e.prepare(topic)
	pub, sub := e.transport(), e.subscribe(e.transport(), topic)
	e.publish(pub, topic, []byte("before restart"))
	e.expectMessages(sub, "before restart", topic, [][]byte{[]byte("before restart")}, true)

	ctx, cancel := context.WithTimeout(e.t.Context(), restartTimeout)
	defer cancel()
	if err := e.h.RestartBroker(ctx); err != nil {
		e.t.Fatalf("restarting the broker: %v", err)
	}
	if err := awaitDelivery(e.t.Context(), pub, sub, topic); err != nil {
		e.t.Fatal(err)
	}
}

// awaitDelivery publishes a fresh message each round, with a growing pause,
// until one of them arrives on sub: messages sent while the adapter is
// still reconnecting may be lost, but delivery must resume.
func awaitDelivery(ctx context.Context, pub transport.Transport, sub transport.Subscription, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, resumeTimeout)
	defer cancel()
	sent := make(map[string]bool)
	var lastErr error
	pause := 100 * time.Millisecond
	for round := 0; ctx.Err() == nil; round++ {
		payload := fmt.Sprintf("after restart %d", round)
		err, ok := within(publishRetryTimeout+ctxGrace, func() error {
			pubCtx, cancelPub := context.WithTimeout(ctx, publishRetryTimeout)
			defer cancelPub()
			return pub.Publish(pubCtx, topic, []byte(payload))
		})
		switch {
		case !ok:
			return fmt.Errorf("publish still blocked %v after its ctx ended", ctxGrace)
		case err != nil:
			lastErr = fmt.Errorf("publish: %w", err)
		default:
			sent[payload] = true
		}
		found, err := drainFor(ctx, sub, pause, sent)
		if found || err != nil {
			return err
		}
		pause = min(2*pause, 2*time.Second)
	}
	return fmt.Errorf("no message arrived on the subscription within %v of the restart (%d published; last error: %v)", resumeTimeout, len(sent), lastErr)
}

// drainFor receives from sub for up to wait and reports whether one of the
// sent payloads arrived. Other messages (a redelivered one from before the
// restart) are ignored. A receive error other than the end of wait is
// final: the subscription did not survive the restart.
func drainFor(ctx context.Context, sub transport.Subscription, wait time.Duration, sent map[string]bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		r, ok := within(wait+ctxGrace, func() received {
			m, err := sub.Receive(ctx)
			return received{m, err}
		})
		if !ok {
			return false, fmt.Errorf("receive still blocked %v after its ctx ended", ctxGrace)
		}
		m, err := r.msg, r.err
		if errors.Is(err, context.DeadlineExceeded) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("the subscription made before the restart failed: %w", err)
		}
		if sent[string(m.Payload)] {
			return true, nil
		}
	}
}

// testConnectionEvents: a broker restart is reported as a Disconnected
// then a Connected event, and by the time of the Connected event the
// subscriptions are live again: one message published afterwards, once,
// arrives.
func testConnectionEvents(e *env) {
	if !e.features.ConnectionEvents || !e.features.BrokerRestart {
		e.t.Skip("transporttest: the harness does not report connection events across a restart")
	}
	topic := e.topic("events")
	e.prepare(topic)
	pub, subTr := e.transport(), e.transport()
	n, ok := subTr.(transport.ConnectionNotifier)
	if !ok {
		e.t.Fatalf("%T does not implement transport.ConnectionNotifier", subTr)
	}
	events := make(chan transport.ConnectionEvent, 64)
	stop := n.NotifyConnection(func(ev transport.ConnectionEvent) {
		select {
		case events <- ev:
		default:
		}
	})
	defer stop()
	sub := e.subscribe(subTr, topic)

	ctx, cancel := context.WithTimeout(e.t.Context(), restartTimeout)
	defer cancel()
	if err := e.h.RestartBroker(ctx); err != nil {
		e.t.Fatalf("restarting the broker: %v", err)
	}
	// A Connected event of the first connection may come first.
	awaitEvent(e.t, ctx, events, transport.Disconnected)
	awaitEvent(e.t, ctx, events, transport.Connected)
	e.publish(pub, topic, []byte("after the Connected event"))
	e.expectMessages(sub, "after the Connected event", topic, [][]byte{[]byte("after the Connected event")}, true)
}

// awaitEvent waits for an event of the given state, skipping others.
func awaitEvent(t *testing.T, ctx context.Context, events <-chan transport.ConnectionEvent, want transport.ConnectionState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, resumeTimeout)
	defer cancel()
	for {
		select {
		case ev := <-events:
			if ev.State == want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %v event within %v", want, resumeTimeout)
		}
	}
}
