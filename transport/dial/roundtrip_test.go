package dial_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/internal/testutil"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/dial"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// testTimeout bounds one connection or round trip.
const testTimeout = 30 * time.Second

// open dials rawURL and closes the transport when the test ends.
func open(t *testing.T, rawURL string, opts dial.Options) transport.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tr, err := dial.Open(ctx, rawURL, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", rawURL, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// roundTrip opens a subscriber and a publisher on rawURL and checks that a
// message crosses the broker, its concrete topic matched by a wildcard.
func roundTrip(t *testing.T, rawURL string, opts dial.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sub := open(t, rawURL, opts)
	pub := open(t, rawURL, opts)
	s, err := sub.Subscribe(ctx, "dial/+/temp")
	if err != nil {
		t.Fatalf("subscribing via %s: %v", rawURL, err)
	}
	payload := []byte("21.5 via " + rawURL)
	if err := pub.Publish(ctx, "dial/kitchen/temp", payload); err != nil {
		t.Fatalf("publishing via %s: %v", rawURL, err)
	}
	msg, err := s.Receive(ctx)
	if err != nil {
		t.Fatalf("receiving via %s: %v", rawURL, err)
	}
	if msg.Topic != "dial/kitchen/temp" || string(msg.Payload) != string(payload) {
		t.Fatalf("received %q on %q, want %q on dial/kitchen/temp", msg.Payload, msg.Topic, payload)
	}
}

// openFails checks that Open fails with an error containing want.
func openFails(t *testing.T, rawURL string, opts dial.Options, want string) error {
	t.Helper()
	return openFailsWithin(t, testTimeout, rawURL, opts, want)
}

// openFailsWithin is openFails for a failure that shows as a handshake
// that never completes (DTLS drops bad records silently): Open is given
// only timeout.
func openFailsWithin(t *testing.T, timeout time.Duration, rawURL string, opts dial.Options, want string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tr, err := dial.Open(ctx, rawURL, opts)
	if err == nil {
		_ = tr.Close()
		t.Fatalf("Open(%s) succeeded, want an error saying %q", rawURL, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("Open(%s): %v; want it to say %q", rawURL, err, want)
	}
	return err
}

func TestMosquitto(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	port := strings.TrimPrefix(m.Addr(), "127.0.0.1:")
	roundTrip(t, "mqtt://127.0.0.1:"+port, dial.Options{})
	roundTrip(t, "tcp://localhost:"+port, dial.Options{ClientID: "", KeepAlive: 5 * time.Second})
}

func TestMosquittoPassword(t *testing.T) {
	m := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{Username: "dev", Password: "p@ss:word"})
	hostPort := m.Addr()
	roundTrip(t, "mqtt://dev:p%40ss%3Aword@"+hostPort, dial.Options{})
	roundTrip(t, "mqtt://dev@"+hostPort, dial.Options{Password: "p@ss:word"})
	roundTrip(t, "mqtt://nobody:wrong@"+hostPort, dial.Options{Username: "dev", Password: "p@ss:word"})
	err := openFails(t, "mqtt://dev:wrong@"+hostPort, dial.Options{}, "bad username or password")
	if !errors.Is(err, mqtt.ErrNotAuthorized) {
		t.Errorf("refused credentials: %v, want mqtt.ErrNotAuthorized", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
}

// TestMosquittoTLS runs mqtts against a Mosquitto that requires client
// certificates, with the CA and client certificate as files.
func TestMosquittoTLS(t *testing.T) {
	testbroker.RequireBinary(t, testbroker.MosquittoBinary)
	dir := t.TempDir()
	m, err := testbroker.NewMosquitto(dir, testbroker.FreePort(t, "tcp"), &testbroker.MosquittoOptions{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	// NewMosquitto writes its test CA as ca.crt in dir; the client
	// certificate exists only in memory, so write it out.
	caFile := filepath.Join(dir, "ca.crt")
	certFile, keyFile := writeClientCert(t, m.ClientTLS().Certificates[0])
	port := strings.TrimPrefix(m.URL(), "ssl://localhost:")
	opts := dial.Options{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}
	roundTrip(t, "mqtts://localhost:"+port, opts)
	roundTrip(t, "ssl://127.0.0.1:"+port, opts)

	// Without the CA the broker's certificate is refused; without a
	// client certificate the broker refuses us.
	openFails(t, "mqtts://localhost:"+port, dial.Options{CertFile: certFile, KeyFile: keyFile}, "certificate signed by unknown authority")
	openFails(t, "mqtts://localhost:"+port, dial.Options{CAFile: caFile}, "mqtt: connecting")
	// The name checked must be the certificate's.
	openFails(t, "mqtts://localhost:"+port, dial.Options{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "other.example"},
		"certificate is valid for localhost, not other.example")
	// Skipping verification accepts the unknown CA (tests only).
	roundTrip(t, "mqtts://localhost:"+port, dial.Options{CertFile: certFile, KeyFile: keyFile, InsecureSkipVerify: true})
}

// writeClientCert writes a certificate and its key as PEM files.
func writeClientCert(t *testing.T, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := testutil.WriteCertificate(t.TempDir(), "client", cert)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// allowAll is a mochi hook that lets every client connect and use every
// topic (mochi's own auth package pulls in a YAML dependency).
type allowAll struct{ mochi.HookBase }

// ID names the hook in mochi's log.
func (*allowAll) ID() string { return "allow-all" }

// Provides tells mochi which events the hook handles.
func (*allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// OnConnectAuthenticate accepts every client.
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic.
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// startWebSocketBroker runs mochi-mqtt with one WebSocket listener (TLS
// when tlsCfg is set) and returns its "127.0.0.1:port".
func startWebSocketBroker(t *testing.T, tlsCfg *tls.Config) string {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "tcp")))
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := server.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := server.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: addr, TLSConfig: tlsCfg})); err != nil {
		t.Fatal(err)
	}
	if err := server.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := testbroker.WaitTCP(ctx, addr); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestWebSocket(t *testing.T) {
	addr := startWebSocketBroker(t, nil)
	roundTrip(t, "ws://"+addr+"/mqtt", dial.Options{})

	pki := testutil.NewTestPKI(t)
	secureAddr := startWebSocketBroker(t, &tls.Config{Certificates: []tls.Certificate{pki.Server}, MinVersion: tls.VersionTLS12})
	port := strings.TrimPrefix(secureAddr, "127.0.0.1:")
	roundTrip(t, "wss://localhost:"+port+"/mqtt", dial.Options{CAFile: pki.CAFile})
	openFails(t, "wss://localhost:"+port+"/mqtt", dial.Options{}, "certificate signed by unknown authority")
}

func TestRabbitMQ(t *testing.T) {
	r := testbroker.StartRabbitMQ(t, nil)
	roundTrip(t, r.AMQPURL(), dial.Options{})
	hostPort := strings.TrimSuffix(strings.TrimPrefix(r.AMQPURL(), "amqp://guest:guest@"), "/")
	roundTrip(t, "amqp://"+hostPort+"/%2f", dial.Options{Username: "guest", Password: "guest", Exchange: "e4kit.dial"})
	openFails(t, "amqp://guest:wrong@"+hostPort, dial.Options{}, "amqp: connecting")
	openFails(t, "amqp://"+hostPort+"/no-such-vhost", dial.Options{}, "amqp: connecting")
}

// startCoAPBroker runs our CoAP broker and returns its "127.0.0.1:port".
func startCoAPBroker(t *testing.T, dtls *broker.DTLSConfig) string {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "udp")))
	b, err := broker.Start(addr, &broker.Options{DTLS: dtls, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return addr
}

func TestCoAP(t *testing.T) {
	roundTrip(t, "coap://"+startCoAPBroker(t, nil), dial.Options{})
}

func TestCoAPDTLS(t *testing.T) {
	psk := []byte("dial-test-pre-shared-key")
	pskAddr := startCoAPBroker(t, &broker.DTLSConfig{PSK: func(identity []byte) ([]byte, error) {
		if string(identity) != "device-1" {
			return nil, errors.New("unknown identity")
		}
		return psk, nil
	}})
	roundTrip(t, "coaps://"+pskAddr+"/ps", dial.Options{PSKIdentity: "device-1", PSK: psk})
	openFailsWithin(t, 3*time.Second, "coaps://"+pskAddr, dial.Options{PSKIdentity: "device-1", PSK: []byte("wrong key")}, "coap: dialling")

	pki := testutil.NewTestPKI(t)
	certAddr := startCoAPBroker(t, &broker.DTLSConfig{Certificates: []tls.Certificate{pki.Server}, ClientCAs: pki.Pool})
	port := strings.TrimPrefix(certAddr, "127.0.0.1:")
	roundTrip(t, "coaps://localhost:"+port, dial.Options{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile})
	openFailsWithin(t, 3*time.Second, "coaps://localhost:"+port, dial.Options{CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}, "coap: dialling")
}

// TestOpenUnreadableFiles checks that Open reports certificate files it
// cannot read before any network activity.
func TestOpenUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "ca.pem")
	if err := os.Mkdir(unreadable, 0o700); err != nil { // a directory: read fails even as root
		t.Fatal(err)
	}
	openFails(t, "mqtts://127.0.0.1:1", dial.Options{CAFile: unreadable}, "reading the CA file")
	openFails(t, "coaps://127.0.0.1:1", dial.Options{CAFile: unreadable}, "reading the CA file")
}
