package coap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// The conformance suite does not run against libcoap's coap-server: it is
// not a queue (an observer gets the latest value, and misses messages of a
// burst, which the suite sends) and knows no wildcards. These tests check
// interoperability instead: one message at a time, each awaited, payloads
// in one datagram and block-wise both ways, topics created by a PUT before
// they are observed (libcoap answers 4.04 otherwise).

// libcoapConfig is the adapter's configuration for libcoap's server.
func libcoapConfig(addr string) coap.Config {
	cfg := testConfig(addr)
	cfg.NoWildcards = true
	return cfg
}

// interopPayloads are payloads of a datagram, of a block and beyond (1048:
// a 1 KiB message with E4, still in one datagram; 5000: block-wise both
// ways, Block1 and Block2 being the adapter's own).
func interopPayloads() [][]byte {
	var out [][]byte
	for _, size := range []int{1, 17, 500, 1000, 1024, 1048, 5000} {
		p := make([]byte, size)
		_, _ = rand.Read(p)
		out = append(out, p)
	}
	return append(out, []byte("text/plain too"))
}

// oneByOne publishes each payload and waits for it on sub.
func oneByOne(t *testing.T, pub transport.Transport, sub transport.Subscription, topic string, payloads [][]byte) {
	t.Helper()
	for i, p := range payloads {
		publish(t, pub, topic, p)
		if m := receive(t, sub); m.Topic != topic || !bytes.Equal(m.Payload, p) {
			t.Fatalf("message %d: sent %d bytes on %q, received %d bytes on %q", i, len(p), topic, len(m.Payload), m.Topic)
		}
	}
}

func TestLibcoapInterop(t *testing.T) {
	server := testbroker.StartLibcoap(t)
	pub := dial(t, libcoapConfig(server.Addr()))
	subscriber := dial(t, libcoapConfig(server.Addr()))
	topic := "interop/kitchen/temp"

	if _, err := subscriber.Subscribe(opContext(t), "interop/not/yet"); err == nil {
		t.Error("observing a path libcoap never saw succeeded, want 4.04")
	}
	publish(t, pub, topic, []byte("created")) // libcoap creates the resource
	sub := subscribe(t, subscriber, topic)
	oneByOne(t, pub, sub, topic, interopPayloads())
	expectQuiet(t, sub)

	if _, err := subscriber.Subscribe(opContext(t), "interop/+/temp"); !errors.Is(err, transport.ErrInvalidTopic) {
		t.Errorf("wildcard subscription to libcoap = %v, want %v", err, transport.ErrInvalidTopic)
	}
	if err := sub.Unsubscribe(opContext(t)); err != nil {
		t.Errorf("Unsubscribe: %v", err)
	}
	publish(t, pub, topic, []byte("after unsubscribe"))
	if _, err := sub.Receive(opContext(t)); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Receive after Unsubscribe = %v, want %v", err, transport.ErrClosed)
	}
}

// TestLibcoapInteropE4: E4 through libcoap: the subscriber decrypts what
// the publisher protected, and a bare observer (what libcoap stores and
// forwards) sees only ciphertext.
func TestLibcoapInteropE4(t *testing.T) {
	server := testbroker.StartLibcoap(t)
	topic := "interop/e4/reading"
	key := make([]byte, e4.KeyLen)
	_, _ = rand.Read(key)
	bare := dial(t, libcoapConfig(server.Addr()))
	publish(t, bare, topic, []byte("created"))

	pub := protectedCoAP(t, bare, libcoapConfig(server.Addr()), topic, key)
	sub := protectedCoAP(t, bare, libcoapConfig(server.Addr()), topic, key)
	plain := subscribe(t, sub, topic)
	wire := subscribe(t, bare, topic)
	for i, p := range interopPayloads() {
		publish(t, pub, topic, p)
		if m := receive(t, plain); !bytes.Equal(m.Payload, p) || m.Topic != topic {
			t.Fatalf("message %d: decrypted %d bytes on %q, want %d on %q", i, len(m.Payload), m.Topic, len(p), topic)
		}
		m := receive(t, wire)
		if len(m.Payload) != len(p)+e4.SKOverhead || bytes.Equal(m.Payload[len(m.Payload)-len(p):], p) {
			t.Fatalf("message %d: libcoap carried %d bytes for a %d-byte plaintext, not E4 ciphertext", i, len(m.Payload), len(p))
		}
		if _, err := e4.UnprotectSymKey(nil, m.Payload, key, nil); err != nil {
			t.Fatalf("message %d: the bytes libcoap carried do not open with the topic key: %v", i, err)
		}
	}
}

// protectedCoAP dials libcoap and protects the transport with a new E4
// client holding key for topic. Its control topic is created first with a
// bare PUT, since libcoap cannot observe a path before it exists.
func protectedCoAP(t *testing.T, bare transport.Transport, cfg coap.Config, topic string, key []byte) *e4transport.Protected {
	t.Helper()
	var id e4.ID
	_, _ = rand.Read(id[:])
	clientKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(clientKey)
	client, err := e4.NewSymKeyClient(id, clientKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetTopicKey(key, topic); err != nil {
		t.Fatal(err)
	}
	publish(t, bare, client.ControlTopic(), []byte("created"))
	p, err := e4transport.Protect(opContext(t), dial(t, cfg), client, nil)
	if err != nil {
		t.Fatalf("protecting: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestLibcoapRestart: after libcoap restarts (and forgets every resource),
// the subscription observes again once the topic exists again.
func TestLibcoapRestart(t *testing.T) {
	server := testbroker.StartLibcoap(t)
	cfg := libcoapConfig(server.Addr())
	cfg.Refresh = time.Second // libcoap says nothing when it stops
	pub, subscriber := dial(t, cfg), dial(t, cfg)
	topic := "interop/restart"
	publish(t, pub, topic, []byte("created"))
	sub := subscribe(t, subscriber, topic)
	oneByOne(t, pub, sub, topic, [][]byte{[]byte("before restart")})

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for i := 0; ; i++ {
		payload := fmt.Appendf(nil, "after restart %d", i)
		publish(t, pub, topic, payload) // also recreates the resource
		wait, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		m, err := sub.Receive(wait)
		cancel()
		if err == nil && bytes.HasPrefix(m.Payload, []byte("after restart")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message within %v of libcoap's restart (last: %v)", testTimeout, err)
		}
	}
}

// libcoapClient is libcoap's command-line client without DTLS.
const libcoapClient = "coap-client-notls"

// TestLibcoapClient: libcoap's coap-client, an independent CoAP stack,
// observes our broker (before any publication, receiving a notification
// of 1100 bytes in one datagram and a block-wise one too) and publishes to
// it with PUT and POST, block-wise included.
func TestLibcoapClient(t *testing.T) {
	testbroker.RequireBinary(t, libcoapClient)
	b := startBroker(t, nil)
	uri := "coap://" + b.addr + "/ps/libcoap/client"
	large := strings.Repeat("0123456789", 300)

	t.Run("observes", func(t *testing.T) {
		observer := testbroker.NewProcess(libcoapClient, []string{"-s", "4", "-B", "4", uri}, nil, "")
		if err := observer.Start(); err != nil {
			t.Fatal(err)
		}
		defer observer.Stop(time.Second)
		waitFor(t, "coap-client's observation", func() bool { return b.current().Observers() == 1 })
		pub := dial(t, testConfig(b.addr))
		payloads := []string{"one", strings.Repeat("1100 bytes", 110), large, "three"}
		for _, p := range payloads {
			publish(t, pub, "libcoap/client", []byte(p))
		}
		waitFor(t, "coap-client to end", observer.Exited)
		if got, want := observer.Output(), strings.Join(payloads, ""); !strings.Contains(got, want) {
			t.Errorf("coap-client printed %d bytes %.60q..., want the %d bytes of the four messages in order", len(got), got, len(want))
		}
	})
	t.Run("publishes", func(t *testing.T) {
		sub := subscribe(t, dial(t, testConfig(b.addr)), "libcoap/client")
		file := filepath.Join(t.TempDir(), "large")
		if err := os.WriteFile(file, []byte(large), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"-m", "put", "-e", "by PUT"}, {"-m", "post", "-e", "by POST"}, {"-m", "put", "-f", file}} {
			out, err := exec.Command(libcoapClient, append(args, uri)...).CombinedOutput()
			// coap-client prints nothing for a 2.04 without body, the code
			// otherwise (and exits 0 even then).
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Fatalf("coap-client %v: %v %s", args, err, out)
			}
		}
		for _, want := range []string{"by PUT", "by POST", large} {
			if m := receive(t, sub); string(m.Payload) != want {
				t.Errorf("received %d bytes %.20q, want %d bytes %.20q", len(m.Payload), m.Payload, len(want), want)
			}
		}
	})
}

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, testTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
