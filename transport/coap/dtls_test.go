package coap_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

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

// testPKI is a CA with a server and a client certificate, made for one test.
type testPKI struct {
	roots  *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey := newKey(t)
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "e4kit test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	pki := &testPKI{roots: x509.NewCertPool()}
	pki.roots.AddCert(ca)
	pki.server = issue(t, ca, caKey, 2, "broker", x509.ExtKeyUsageServerAuth)
	pki.client = issue(t, ca, caKey, 3, "device-1", x509.ExtKeyUsageClientAuth)
	return pki
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestDTLSCertificates(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, &broker.Options{DTLS: &broker.DTLSConfig{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.roots,
	}})
	cfg := testConfig(b.addr)
	cfg.DTLS = &coap.DTLSConfig{RootCAs: pki.roots, Certificates: []tls.Certificate{pki.client}}
	roundTrip(t, dial(t, cfg), "dtls/certificates")

	t.Run("no client certificate", func(t *testing.T) {
		cfg := testConfig(b.addr)
		cfg.DTLS = &coap.DTLSConfig{RootCAs: pki.roots}
		expectDialFails(t, cfg)
	})
	t.Run("unknown broker CA", func(t *testing.T) {
		other := newTestPKI(t)
		cfg := testConfig(b.addr)
		cfg.DTLS = &coap.DTLSConfig{RootCAs: other.roots, Certificates: []tls.Certificate{pki.client}}
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
