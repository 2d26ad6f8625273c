package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// TestPKIChains: the server and client certificates chain to the CA for
// their usage, and the PEM files load as the same pairs.
func TestPKIChains(t *testing.T) {
	p := NewTestPKI(t)
	for _, c := range []struct {
		cert  tls.Certificate
		usage x509.ExtKeyUsage
		host  string
	}{{p.Server, x509.ExtKeyUsageServerAuth, "127.0.0.1"}, {p.Client, x509.ExtKeyUsageClientAuth, ""}} {
		opts := x509.VerifyOptions{Roots: p.Pool, KeyUsages: []x509.ExtKeyUsage{c.usage}, DNSName: c.host}
		if _, err := c.cert.Leaf.Verify(opts); err != nil {
			t.Errorf("%s: %v", c.cert.Leaf.Subject.CommonName, err)
		}
	}
	for _, files := range [][2]string{{p.ServerCertFile, p.ServerKeyFile}, {p.ClientCertFile, p.ClientKeyFile}} {
		if _, err := tls.LoadX509KeyPair(files[0], files[1]); err != nil {
			t.Error(err)
		}
	}
	if other := NewTestPKI(t); other.Server.Leaf.CheckSignatureFrom(p.CA) == nil {
		t.Error("two PKIs share a CA")
	}
}
