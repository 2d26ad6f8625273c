package dial

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/e4-iot/e4kit/transport/coap"
)

// tlsConfig builds the TLS configuration of mqtts, wss and amqps from the
// options' files.
func (o *Options) tlsConfig() (*tls.Config, error) {
	roots, err := o.rootCAs()
	if err != nil {
		return nil, err
	}
	certs, err := o.clientCertificates()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            roots,
		Certificates:       certs,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, // off unless asked for; documented as for tests only
	}, nil
}

// dtlsConfig builds the DTLS configuration of coaps: a pre-shared key when
// one is given, else certificates.
func (o *Options) dtlsConfig() (*coap.DTLSConfig, error) {
	if len(o.PSK) > 0 {
		if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != "" {
			return nil, errors.New("coaps takes a pre-shared key or certificates, not both")
		}
		return &coap.DTLSConfig{PSKIdentity: []byte(o.PSKIdentity), PSK: bytes.Clone(o.PSK)}, nil
	}
	roots, err := o.rootCAs()
	if err != nil {
		return nil, err
	}
	certs, err := o.clientCertificates()
	if err != nil {
		return nil, err
	}
	return &coap.DTLSConfig{Certificates: certs, RootCAs: roots, ServerName: o.ServerName}, nil
}

// rootCAs reads CAFile; nil (the system roots) without one.
func (o *Options) rootCAs() (*x509.CertPool, error) {
	if o.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
	}
	return pool, nil
}

// clientCertificates loads CertFile and KeyFile; none without them.
func (o *Options) clientCertificates() ([]tls.Certificate, error) {
	switch {
	case o.CertFile == "" && o.KeyFile == "":
		return nil, nil
	case o.CertFile == "" || o.KeyFile == "":
		return nil, errors.New("a client certificate needs both the certificate file and the key file")
	}
	for _, path := range []string{o.CertFile, o.KeyFile} {
		// Checked first so that a missing file is named plainly.
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the client certificate %s and key %s: %w", o.CertFile, o.KeyFile, err)
	}
	return []tls.Certificate{cert}, nil
}
