package mqtt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// Bounds of the tests: deadlines that turn a hang into a failure.
const (
	opTimeout = 20 * time.Second
	quietWait = 300 * time.Millisecond
)

// opContext bounds one operation.
func opContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// uniqueTopic returns "e4kit-mqtt-test/<random>/<levels...>".
func uniqueTopic(t testing.TB, levels ...string) string {
	t.Helper()
	return strings.Join(append([]string{"e4kit-mqtt-test", randomHex(4)}, levels...), "/")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// dial connects with cfg, closing the transport when the test ends.
func dial(t testing.TB, cfg mqtt.Config) *mqtt.Transport {
	t.Helper()
	tr, err := mqtt.Dial(opContext(t), cfg)
	if err != nil {
		t.Fatalf("Dial(%v): %v", cfg.Brokers, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func subscribe(t testing.TB, tr transport.Transport, filter string) transport.Subscription {
	t.Helper()
	sub, err := tr.Subscribe(opContext(t), filter)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", filter, err)
	}
	return sub
}

func publish(t testing.TB, tr transport.Transport, topic string, payload []byte, opts ...transport.PublishOption) {
	t.Helper()
	if err := tr.Publish(opContext(t), topic, payload, opts...); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

func receive(t testing.TB, sub transport.Subscription, what string) *transport.Message {
	t.Helper()
	m, err := sub.Receive(opContext(t))
	if err != nil {
		t.Fatalf("%s: Receive: %v", what, err)
	}
	return m
}

// expect receives one message per payload, in order, all on topic.
func expect(t testing.TB, sub transport.Subscription, what, topic string, payloads ...string) {
	t.Helper()
	for _, want := range payloads {
		m := receive(t, sub, what)
		if m.Topic != topic || !bytes.Equal(m.Payload, []byte(want)) {
			t.Fatalf("%s: got %q on %q, want %q on %q", what, m.Payload, m.Topic, want, topic)
		}
	}
}

// expectQuiet checks that nothing more arrives for a while.
func expectQuiet(t testing.TB, sub transport.Subscription, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), quietWait)
	defer cancel()
	m, err := sub.Receive(ctx)
	if err == nil {
		t.Fatalf("%s: unexpected message %q on %q", what, m.Payload, m.Topic)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: Receive = %v, want a timeout", what, err)
	}
}
