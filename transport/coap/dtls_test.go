package coap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testutil"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/coap/broker"
)

// roundTrip subscribes and publishes a small payload, one of a whole
// datagram (a 1 KiB message with E4) and a block-wise one through tr.
func roundTrip(t *testing.T, tr *coap.Transport, topic string) {
	t.Helper()
	sub := subscribe(t, tr, topic)
	whole, large := make([]byte, 1048), make([]byte, 10_000)
	_, _ = rand.Read(whole)
	_, _ = rand.Read(large)
	for _, payload := range [][]byte{[]byte("over DTLS"), whole, large} {
		publish(t, tr, topic, payload)
		if m := receive(t, sub); !bytes.Equal(m.Payload, payload) || m.Topic != topic {
			t.Fatalf("sent %d bytes on %q, received %d on %q", len(payload), topic, len(m.Payload), m.Topic)
		}
	}
}

func pskBroker(t *testing.T, identity string, key []byte) *inProcessBroker {
	return startBroker(t, &broker.Options{DTLS: &broker.DTLSConfig{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != identity {
				return nil, errors.New("unknown identity")
			}
			return key, nil
		},
	}})
}

func TestDTLSPSK(t *testing.T) {
	key := []byte("0123456789abcdef")
	b := pskBroker(t, "device-1", key)
	cfg := testConfig(b.addr)
	cfg.DTLS = &coap.DTLSConfig{PSKIdentity: []byte("device-1"), PSK: key}
	roundTrip(t, dial(t, cfg), "dtls/psk")
}

func TestDTLSWrongPSK(t *testing.T) {
	b := pskBroker(t, "device-1", []byte("0123456789abcdef"))
	for name, d := range map[string]*coap.DTLSConfig{
		"wrong key":      {PSKIdentity: []byte("device-1"), PSK: []byte("fedcba9876543210")},
		"wrong identity": {PSKIdentity: []byte("device-2"), PSK: []byte("0123456789abcdef")},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(b.addr)
			cfg.DTLS = d
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tr, err := coap.Dial(ctx, cfg)
			if err == nil {
				_ = tr.Close()
				t.Fatal("Dial with a wrong PSK succeeded")
			}
		})
	}
}

// plainClientToDTLS: a client without DTLS gets no answer from a DTLS
// broker.
func TestDTLSRefusesPlainCoAP(t *testing.T) {
	b := pskBroker(t, "device-1", []byte("0123456789abcdef"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cfg := testConfig(b.addr)
	cfg.Timeout = time.Second
	if tr, err := coap.Dial(ctx, cfg); err == nil {
		_ = tr.Close()
		t.Fatal("plain CoAP to a DTLS broker succeeded")
	}
}

func TestDTLSCertificates(t *testing.T) {
	pki := testutil.NewTestPKI(t)
	b := startBroker(t, &broker.Options{DTLS: &broker.DTLSConfig{
		Certificates: []tls.Certificate{pki.Server},
		ClientCAs:    pki.Pool,
	}})
	cfg := testConfig(b.addr)
	cfg.DTLS = &coap.DTLSConfig{RootCAs: pki.Pool, Certificates: []tls.Certificate{pki.Client}}
	roundTrip(t, dial(t, cfg), "dtls/certificates")

	t.Run("no client certificate", func(t *testing.T) {
		cfg := testConfig(b.addr)
		cfg.DTLS = &coap.DTLSConfig{RootCAs: pki.Pool}
		expectDialFails(t, cfg)
	})
	t.Run("unknown broker CA", func(t *testing.T) {
		other := testutil.NewTestPKI(t)
		cfg := testConfig(b.addr)
		cfg.DTLS = &coap.DTLSConfig{RootCAs: other.Pool, Certificates: []tls.Certificate{pki.Client}}
		expectDialFails(t, cfg)
	})
}

func expectDialFails(t *testing.T, cfg coap.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if tr, err := coap.Dial(ctx, cfg); err == nil {
		_ = tr.Close()
		t.Fatal("Dial succeeded")
	}
}
