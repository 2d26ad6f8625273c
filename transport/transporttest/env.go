package transporttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

// Bounds of the suite. They are deadlines that turn a hanging adapter into
// a failure, not expectations of speed.
const (
	// DefaultMaxPayload is the large-payload size when Features.MaxPayload
	// is 0.
	DefaultMaxPayload = 64 << 10

	// opTimeout bounds one call to an adapter (connect, subscribe,
	// publish, one receive).
	opTimeout = 20 * time.Second

	// quietWait is how long a test listens to decide that nothing more
	// arrives. It is short to keep the suite fast: a stray message that
	// comes later is missed, which only makes the test weaker, never flaky.
	quietWait = 300 * time.Millisecond

	// ctxGrace is how long after its ctx ends a call may take to return.
	ctxGrace = 5 * time.Second

	// TopicRoot is the first level of every topic the suite uses, so that
	// its traffic is easy to recognise on a shared broker.
	TopicRoot = "e4kit-test"
)

// env is what one conformance test works with: a fresh harness and a topic
// prefix of its own.
type env struct {
	t        *testing.T
	h        Harness
	features Features
	prefix   string
}

// newEnv makes the harness of one test; the harness is closed when the test
// ends, after everything the test opened.
func newEnv(t *testing.T, newHarness HarnessMaker) *env {
	t.Helper()
	// The harness may tie resources to ctx (a broker process, say), so it
	// gets the test's context, which lives until the test's cleanups.
	h, err := newHarness(t.Context(), t)
	if err != nil {
		t.Fatalf("making the harness: %v", err)
	}
	t.Cleanup(h.Close)
	f := h.Features()
	if f.MaxPayload <= 0 {
		f.MaxPayload = DefaultMaxPayload
	}
	return &env{t: t, h: h, features: f, prefix: uniquePrefix(t)}
}

// uniquePrefix returns "e4kit-test/<test name>/<random hex>".
func uniquePrefix(t *testing.T) string {
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return TopicRoot + "/" + sanitizeLevel(name) + "/" + randomHex(4)
}

// sanitizeLevel keeps letters, digits, '-' and '_', so that the level is
// valid for every protocol (no '.' for AMQP, no wildcard, no separator).
func sanitizeLevel(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// topic returns a concrete topic under the test's prefix.
func (e *env) topic(levels ...string) string {
	return strings.Join(append([]string{e.prefix}, levels...), "/")
}

// prepare tells the harness about the concrete topics the test will use.
func (e *env) prepare(topics ...string) {
	e.t.Helper()
	p, ok := e.h.(TopicPreparer)
	if !ok {
		return
	}
	for _, topic := range topics {
		if err := p.PrepareTopic(topic); err != nil {
			e.t.Fatalf("preparing topic %q: %v", topic, err)
		}
	}
}

// opContext bounds one operation; it ends with the test at the latest.
func (e *env) opContext() context.Context {
	ctx, cancel := context.WithTimeout(e.t.Context(), opTimeout)
	e.t.Cleanup(cancel)
	return ctx
}

// transport opens a connection, closed when the test ends.
func (e *env) transport() transport.Transport {
	e.t.Helper()
	tr, err := e.h.MakeTransport(e.opContext())
	if err != nil {
		e.t.Fatalf("making a transport: %v", err)
	}
	e.t.Cleanup(func() {
		if err := tr.Close(); err != nil && !errors.Is(err, transport.ErrClosed) {
			e.t.Errorf("closing a transport: %v", err)
		}
	})
	return tr
}

// subscribe subscribes tr to filter, until the test ends.
func (e *env) subscribe(tr transport.Transport, filter string) transport.Subscription {
	e.t.Helper()
	sub, err := tr.Subscribe(e.opContext(), filter)
	if err != nil {
		e.t.Fatalf("subscribing to %q: %v", filter, err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := sub.Unsubscribe(ctx); err != nil && !errors.Is(err, transport.ErrClosed) {
			e.t.Errorf("unsubscribing from %q: %v", filter, err)
		}
	})
	return sub
}

// publish publishes payload on topic through tr.
func (e *env) publish(tr transport.Transport, topic string, payload []byte, opts ...transport.PublishOption) {
	e.t.Helper()
	err, ok := within(opTimeout+ctxGrace, func() error {
		return tr.Publish(e.opContext(), topic, payload, opts...)
	})
	switch {
	case !ok:
		e.t.Fatalf("publishing on %q: Publish still blocked %v after its ctx ended", topic, ctxGrace)
	case err != nil:
		e.t.Fatalf("publishing %s on %q: %v", describe(payload), topic, err)
	}
}

// within runs f in the background and returns its result, or false if it
// takes longer than limit (f then finishes unobserved).
func within[T any](limit time.Duration, f func() T) (T, bool) {
	out := make(chan T, 1)
	go func() { out <- f() }()
	select {
	case v := <-out:
		return v, true
	case <-time.After(limit):
		var zero T
		return zero, false
	}
}

// receive returns the next message of sub.
func (e *env) receive(sub transport.Subscription, what string) *transport.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), opTimeout)
	defer cancel()
	r := e.await(receiveAsync(ctx, sub), what)
	if r.err != nil {
		e.t.Fatalf("%s: receiving: %v", what, r.err)
	}
	return r.msg
}

// received is the outcome of one Receive call run in the background.
type received struct {
	msg *transport.Message
	err error
}

// receiveAsync runs Receive in the background, so that the test can give
// up on an adapter that ignores ctx.
func receiveAsync(ctx context.Context, sub transport.Subscription) <-chan received {
	out := make(chan received, 1)
	go func() {
		m, err := sub.Receive(ctx)
		out <- received{m, err}
	}()
	return out
}

// await waits for a background Receive whose ctx ends within opTimeout,
// failing the test if Receive ignores its ctx.
func (e *env) await(pending <-chan received, what string) received {
	e.t.Helper()
	select {
	case r := <-pending:
		return r
	case <-time.After(opTimeout + ctxGrace):
		e.t.Fatalf("%s: Receive still blocked %v after its ctx ended", what, ctxGrace)
		return received{}
	}
}

// expectQuiet checks that each of subs receives nothing more for a short
// while; they listen at the same time.
func (e *env) expectQuiet(what string, subs ...transport.Subscription) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), quietWait)
	defer cancel()
	results := make([]<-chan received, len(subs))
	for i, sub := range subs {
		results[i] = receiveAsync(ctx, sub)
	}
	for _, result := range results {
		r := e.await(result, what)
		switch {
		case r.err == nil:
			e.t.Errorf("%s: unexpected message on %q: %s", what, r.msg.Topic, describe(r.msg.Payload))
		case !errors.Is(r.err, context.DeadlineExceeded):
			e.t.Errorf("%s: Receive while waiting for silence = %v, want %v", what, r.err, context.DeadlineExceeded)
		}
	}
}

// expectMessages receives len(want) messages, each on topic, and compares
// their payloads with want: in order if ordered, else as multisets.
func (e *env) expectMessages(sub transport.Subscription, what, topic string, want [][]byte, ordered bool) {
	e.t.Helper()
	missing := make(map[string]int, len(want))
	for _, p := range want {
		missing[string(p)]++
	}
	for i, w := range want {
		m := e.receive(sub, fmt.Sprintf("%s: message %d of %d", what, i+1, len(want)))
		if m.Topic != topic {
			e.t.Errorf("%s: message %d on topic %q, want %q", what, i+1, m.Topic, topic)
		}
		if ordered && string(m.Payload) != string(w) {
			e.t.Fatalf("%s: message %d is %s, want %s (order or content differs)", what, i+1, describe(m.Payload), describe(w))
		}
		if missing[string(m.Payload)] == 0 {
			e.t.Errorf("%s: unexpected or duplicate payload %s", what, describe(m.Payload))
			continue
		}
		missing[string(m.Payload)]--
	}
	for p, n := range missing {
		if n > 0 {
			e.t.Errorf("%s: %d copies of %s never arrived", what, n, describe([]byte(p)))
		}
	}
}

// describe shows a payload briefly: short ones quoted, long ones by size.
func describe(p []byte) string {
	if len(p) <= 48 {
		return fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%d bytes starting %q", len(p), p[:16])
}
