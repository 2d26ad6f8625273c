package amqp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// TestAMQPS runs the adapter over amqps against a node that requires
// client certificates signed by its test CA. One node serves every
// subtest, since it boots in several seconds; the conformance suite runs
// last because it restarts the node.
func TestAMQPS(t *testing.T) {
	r := testbroker.StartRabbitMQ(t, &testbroker.RabbitMQOptions{TLS: true})
	t.Run("RoundTrip", func(t *testing.T) { testTLSRoundTrip(t, r) })
	t.Run("Protect", func(t *testing.T) { testTLSProtect(t, r) })
	t.Run("WrongCA", func(t *testing.T) { testTLSWrongCA(t, r) })
	t.Run("NoClientCertificate", func(t *testing.T) { testTLSNoClientCert(t, r) })
	t.Run("PlainToTLSPort", func(t *testing.T) { testPlainToTLSPort(t, r) })
	t.Run("SharedTLSConfig", func(t *testing.T) { testSharedTLSConfig(t, r) })
	t.Run("Conformance", func(t *testing.T) {
		transporttest.RunAll(t, func(context.Context, *testing.T) (transporttest.Harness, error) {
			return &tlsHarness{harness{r: r}}, nil
		})
	})
}

// tlsConfig is a Config for the node's TLS listener, with the client
// certificate and quick reconnection.
func tlsConfig(r *testbroker.RabbitMQ) amqp.Config {
	cfg := testConfig(r)
	cfg.URL, cfg.TLS = r.AMQPSURL(), r.ClientTLS()
	return cfg
}

// tlsHarness is the conformance harness over amqps; restarting the node
// and the features are the plain harness's.
type tlsHarness struct{ harness }

func (h *tlsHarness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	return amqp.Dial(ctx, tlsConfig(h.r))
}

// testTLSRoundTrip publishes with publisher confirms and receives on a
// subscription, both over amqps, and checks that the node sees TLS
// connections authenticated by the client certificate.
func testTLSRoundTrip(t *testing.T, r *testbroker.RabbitMQ) {
	pub, subTr := dial(t, tlsConfig(r)), dial(t, tlsConfig(r))
	topic := uniqueTopic(t, "tls/+")
	sub, err := subTr.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatalf("Subscribe over amqps: %v", err)
	}
	concrete := strings.TrimSuffix(topic, "+") + "kitchen"
	payload := []byte("21.5 C over amqps")
	if err := pub.Publish(testContext(t), concrete, payload, transport.WithQoS(transport.AtLeastOnce)); err != nil {
		t.Fatalf("Publish over amqps: %v", err)
	}
	m, err := sub.Receive(testContext(t))
	if err != nil {
		t.Fatalf("Receive over amqps: %v", err)
	}
	if m.Topic != concrete || !bytes.Equal(m.Payload, payload) {
		t.Errorf("got %q on %q, want %q on %q", m.Payload, m.Topic, payload, concrete)
	}
	if n := tlsConnections(t, r); n < 2 {
		t.Errorf("the node lists %d TLS connections with the test client's certificate, want at least 2", n)
	}
}

// tlsConnections counts the node's connections that use TLS and present
// the test client certificate, as rabbitmqctl lists them.
func tlsConnections(t *testing.T, r *testbroker.RabbitMQ) int {
	t.Helper()
	out, err := r.Ctl(testContext(t), "list_connections", "-q", "--no-table-headers", "ssl", "peer_cert_subject")
	if err != nil {
		t.Fatalf("list_connections: %v\n%s", err, out)
	}
	n := 0
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "true") && strings.Contains(line, "e4kit-test-client") {
			n++
		}
	}
	if n == 0 {
		t.Logf("list_connections:\n%s", out)
	}
	return n
}

// testTLSProtect runs E4 over amqps: the application receives the
// device's plaintext, and a bare AMQP consumer (itself on amqps) sees
// only ciphertext that the topic key opens.
func testTLSProtect(t *testing.T, r *testbroker.RabbitMQ) {
	topic := uniqueTopic(t, "tls/e4")
	topicKey := e4Key(t)
	wireCh := rawTLSChannel(t, r)
	key, _ := amqp.RoutingKey(topic)
	wire, err := wireCh.Consume(bareQueue(t, wireCh, key, nil), "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	device := protect(t, dial(t, tlsConfig(r)), e4Client(t, "device", topic, topicKey))
	app := protect(t, dial(t, tlsConfig(r)), e4Client(t, "app", topic, topicKey))
	sub, err := app.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}

	plain := []byte("valve 3 open")
	if err := device.Publish(testContext(t), topic, plain); err != nil {
		t.Fatalf("protected Publish over amqps: %v", err)
	}
	expect(t, sub, "E4 subscriber", topic, plain)
	select {
	case d := <-wire:
		if bytes.Contains(d.Body, plain) || len(d.Body) != len(plain)+e4.SKOverhead {
			t.Errorf("the bare consumer got %d bytes %q, want %d bytes of ciphertext", len(d.Body), d.Body, len(plain)+e4.SKOverhead)
		}
		if opened, err := e4.UnprotectSymKey(nil, d.Body, topicKey, nil); err != nil || !bytes.Equal(opened, plain) {
			t.Errorf("the topic key opens the wire payload to %q, %v", opened, err)
		}
	case <-testContext(t).Done():
		t.Fatal("the bare consumer got nothing")
	}
}

// rawTLSChannel opens a bare amqp091 connection over amqps with the
// client certificate; it closes when the test ends.
func rawTLSChannel(t *testing.T, r *testbroker.RabbitMQ) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.DialTLS(r.AMQPSURL(), r.ClientTLS())
	if err != nil {
		t.Fatalf("amqp091.DialTLS: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}

// testTLSWrongCA checks that a node whose certificate the client's roots
// do not sign is refused during the handshake.
func testTLSWrongCA(t *testing.T, r *testbroker.RabbitMQ) {
	cfg := tlsConfig(r)
	cfg.TLS.RootCAs = x509.NewCertPool()
	err := dialRefused(t, cfg)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("Dial with a CA that does not sign the node = %v, want x509.UnknownAuthorityError", err)
	}
}

// testTLSNoClientCert checks that the node refuses a client that presents
// no certificate (fail_if_no_peer_cert). Under TLS 1.3 the client's side
// of the handshake completes before the node checks, so the refusal shows
// as its alert or as a reset on the first write, whichever the client
// meets first; under TLS 1.2 it is always an alert during the handshake.
func testTLSNoClientCert(t *testing.T, r *testbroker.RabbitMQ) {
	cfg := tlsConfig(r)
	cfg.TLS = r.ClientTLSWithoutCert()
	dialRefused(t, cfg)

	cfg.TLS = r.ClientTLSWithoutCert()
	cfg.TLS.MaxVersion = tls.VersionTLS12
	err := dialRefused(t, cfg)
	if !strings.Contains(err.Error(), "remote error: tls: handshake failure") {
		t.Errorf("Dial over TLS 1.2 without a client certificate = %v, want the node's handshake failure alert", err)
	}
}

// testPlainToTLSPort checks that plain AMQP to the TLS listener fails
// rather than waiting for an AMQP answer that never comes.
func testPlainToTLSPort(t *testing.T, r *testbroker.RabbitMQ) {
	cfg := testConfig(r)
	cfg.URL = "amqp://guest:guest@" + r.TLSAddr() + "/"
	dialRefused(t, cfg)
}

// dialRefused dials cfg, expecting an error that comes from the exchange
// with the node and not from a deadline: a refusal must not look like a
// hang.
func dialRefused(t *testing.T, cfg amqp.Config) error {
	t.Helper()
	cfg.DialTimeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	tr, err := amqp.Dial(ctx, cfg)
	if err == nil {
		_ = tr.Close()
		t.Fatalf("Dial(%s) succeeded, want a refusal", cfg.URL)
	}
	var netErr interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		t.Fatalf("Dial(%s) timed out (%v), want an immediate refusal", cfg.URL, err)
	}
	t.Logf("refused: %v", err)
	return err
}

// testSharedTLSConfig dials twice at once with one tls.Config: the adapter
// must not write to the caller's configuration (amqp091 sets ServerName on
// the one it is given).
func testSharedTLSConfig(t *testing.T, r *testbroker.RabbitMQ) {
	shared := r.ClientTLS()
	done := make(chan error, 2)
	for range 2 {
		go func() {
			cfg := tlsConfig(r)
			cfg.TLS = shared
			tr, err := amqp.Dial(testContext(t), cfg)
			if err == nil {
				_ = tr.Close()
			}
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if shared.ServerName != "" {
		t.Errorf("Dial set ServerName %q on the caller's tls.Config", shared.ServerName)
	}
}
