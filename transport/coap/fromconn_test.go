package coap_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/coap/broker"
)

// wireLog records what the broker carries.
type wireLog struct {
	mu       sync.Mutex
	payloads map[string][][]byte
}

func (w *wireLog) record(topic string, payload []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.payloads[topic] = append(w.payloads[topic], bytes.Clone(payload))
}

func (w *wireLog) of(topic string) [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.payloads[topic]
}

func newE4Client(t *testing.T, topic string, key []byte) *e4.Client {
	t.Helper()
	var id e4.ID
	_, _ = rand.Read(id[:])
	clientKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(clientKey)
	c, err := e4.NewSymKeyClient(id, clientKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetTopicKey(key, topic); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProtectAppConn: coap.Protect adds E4 to go-coap connections the
// application made itself; messages round-trip, small and block-wise, the
// broker only ever sees ciphertext, and closing the Protected transport
// leaves the application's connection usable.
func TestProtectAppConn(t *testing.T) {
	wire := &wireLog{payloads: make(map[string][][]byte)}
	b := startBroker(t, &broker.Options{OnPublish: wire.record})
	topic := "devices/thermostat-42/temperature"
	key := make([]byte, e4.KeyLen)
	_, _ = rand.Read(key)

	pubConn, subConn := dialApp(t, b.addr), dialApp(t, b.addr)
	pub, err := coap.Protect(opContext(t), pubConn, newE4Client(t, topic, key), nil, nil)
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	sub, err := coap.Protect(opContext(t), subConn, newE4Client(t, topic, key), &coap.Config{KeepAlive: -1}, nil)
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	s := subscribe(t, sub, topic)
	large := make([]byte, 20_000)
	_, _ = rand.Read(large)
	sent := [][]byte{[]byte("21.5 C"), large}
	for _, p := range sent {
		publish(t, pub, topic, p)
		if m := receive(t, s); !bytes.Equal(m.Payload, p) || m.Topic != topic {
			t.Fatalf("decrypted %d bytes on %q, want %d on %q", len(m.Payload), m.Topic, len(p), topic)
		}
	}

	carried := wire.of(topic)
	if len(carried) != len(sent) {
		t.Fatalf("the broker carried %d messages on %q, want %d", len(carried), topic, len(sent))
	}
	for i, c := range carried {
		if len(c) != len(sent[i])+e4.SKOverhead || bytes.Contains(c, sent[i]) {
			t.Errorf("message %d: the broker saw %d bytes holding the plaintext, not ciphertext", i, len(c))
		}
		plain, err := e4.UnprotectSymKey(nil, c, key, nil)
		if err != nil || !bytes.Equal(plain, sent[i]) {
			t.Errorf("message %d: what the broker carried does not open to the plaintext: %v", i, err)
		}
	}

	// The application's connection outlives the transport.
	if err := pub.Close(); err != nil {
		t.Fatalf("closing: %v", err)
	}
	if err := pub.Publish(opContext(t), topic, []byte("late")); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := pubConn.Ping(opContext(t)); err != nil {
		t.Errorf("the application's connection does not work after Close: %v", err)
	}
}

// TestFromConnClosedByApp: when the application closes its connection,
// the Transport ends its subscriptions.
func TestFromConnClosedByApp(t *testing.T) {
	b := startBroker(t, nil)
	conn := dialApp(t, b.addr)
	tr, err := coap.FromConn(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, tr, "app/closed")
	_ = conn.Close()
	if _, err := sub.Receive(opContext(t)); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Receive after the application closed its connection = %v, want %v", err, transport.ErrClosed)
	}
}
