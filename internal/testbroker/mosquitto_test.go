package testbroker

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestMosquittoRestart: Restart stops the process and starts a new one on
// the same address, which accepts connections again.
func TestMosquittoRestart(t *testing.T) {
	m := StartMosquitto(t, nil)
	before, url := m.PID(), m.URL()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if after := m.PID(); after == 0 || after == before {
		t.Fatalf("PID %d before the restart, %d after: want a new process", before, after)
	}
	if m.URL() != url {
		t.Fatalf("URL changed from %s to %s", url, m.URL())
	}
	c, err := net.DialTimeout("tcp", m.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	c.Close()
	if m.ClientTLS() != nil {
		t.Error("ClientTLS() of a plain listener is not nil")
	}
}

// TestMosquittoTLSHandshake: the TLS listener presents a certificate for
// localhost signed by the test CA, and accepts the client certificate.
func TestMosquittoTLSHandshake(t *testing.T) {
	m := StartMosquitto(t, &MosquittoOptions{TLS: true})
	cfg := m.ClientTLS()
	cfg.ServerName = "localhost"
	d := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(t.Context(), "tcp", m.Addr())
	if err != nil {
		t.Fatalf("TLS handshake: %v\n%s", err, m.Output())
	}
	c.Close()
}
