package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pkiValidity is how long the test certificates are valid (from an hour
// ago, so a clock a little behind does not refuse them).
const pkiValidity = 24 * time.Hour

// PKI is a throwaway certificate authority with a server certificate for
// localhost and 127.0.0.1 and a client certificate, each also written as
// PEM files (ca.crt, server.crt/.key, client.crt/.key) for programs that
// take file names.
type PKI struct {
	CA     *x509.Certificate
	CAKey  *ecdsa.PrivateKey
	Pool   *x509.CertPool // holds CA only
	CAFile string

	Server                        tls.Certificate
	ServerCertFile, ServerKeyFile string

	Client                        tls.Certificate
	ClientCertFile, ClientKeyFile string
}

// NewPKI makes a PKI, writing its files in dir.
func NewPKI(dir string) (*PKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testutil: CA key: %w", err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "e4kit test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(pkiValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testutil: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testutil: CA certificate: %w", err)
	}
	p := &PKI{CA: ca, CAKey: key, Pool: x509.NewCertPool(), CAFile: filepath.Join(dir, "ca.crt")}
	p.Pool.AddCert(ca)
	if err := writePEM(p.CAFile, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if p.Server, err = p.Issue(pkix.Name{CommonName: "localhost"}, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if p.ServerCertFile, p.ServerKeyFile, err = WriteCertificate(dir, "server", p.Server); err != nil {
		return nil, err
	}
	if p.Client, err = p.Issue(pkix.Name{CommonName: "e4kit-test-client"}, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	if p.ClientCertFile, p.ClientKeyFile, err = WriteCertificate(dir, "client", p.Client); err != nil {
		return nil, err
	}
	return p, nil
}

// NewTestPKI is NewPKI in a temporary directory of t, failing t on error.
func NewTestPKI(t testing.TB) *PKI {
	t.Helper()
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue returns a new certificate of the CA for subject and usage. Server
// certificates cover localhost and 127.0.0.1.
func (p *PKI) Issue(subject pkix.Name, usage x509.ExtKeyUsage) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testutil: key for %s: %w", subject.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(pkiValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		template.DNSNames = []string{"localhost"}
		template.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, p.CA, &key.PublicKey, p.CAKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testutil: certificate for %s: %w", subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueClient is Issue of a client certificate for subject, failing t on
// error.
func (p *PKI) IssueClient(t testing.TB, subject pkix.Name) tls.Certificate {
	t.Helper()
	cert, err := p.Issue(subject, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ClientTLS returns a new client configuration that trusts the CA and,
// with withCert, presents the client certificate. A new one each time,
// since some clients fill in the ServerName of the configuration they are
// given.
func (p *PKI) ClientTLS(withCert bool) *tls.Config {
	config := &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
	if withCert {
		config.Certificates = []tls.Certificate{p.Client}
	}
	return config
}

// WriteCertificate writes cert and its key as PEM files NAME.crt and
// NAME.key in dir, for programs that take file names.
func WriteCertificate(dir, name string, cert tls.Certificate) (certFile, keyFile string, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("testutil: encoding the %s key: %w", name, err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := writePEM(certFile, "CERTIFICATE", cert.Certificate[0]); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writePEM(keyFile, "PRIVATE KEY", keyDER)
}

func writePEM(path, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("testutil: %w", err)
	}
	return nil
}
