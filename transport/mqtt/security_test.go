package mqtt_test

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// TestMutualTLS: against a Mosquitto listener that requires client
// certificates from its private CA, the CA plus a client certificate
// connects and round-trips; no client certificate, or no trust in the CA,
// fails.
func TestMutualTLS(t *testing.T) {
	m := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{TLS: true})
	withTLS := func(c *tls.Config) mqtt.Config {
		cfg := dialConfig(m.URL())
		cfg.TLS = c
		return cfg
	}

	tr := dial(t, withTLS(m.ClientTLS()))
	topic := uniqueTopic(t, "tls")
	sub := subscribe(t, tr, topic)
	publish(t, tr, topic, []byte("over mutual TLS"))
	expect(t, sub, "TLS subscriber", topic, "over mutual TLS")

	for name, c := range map[string]*tls.Config{
		"without client certificate": m.ClientTLSWithoutCert(),
		"without the CA":             {Certificates: m.ClientTLS().Certificates, MinVersion: tls.VersionTLS12},
	} {
		t.Run(name, func(t *testing.T) {
			if tr, err := mqtt.Dial(opContext(t), withTLS(c)); err == nil {
				_ = tr.Close()
				t.Fatal("Dial succeeded, want an error")
			}
		})
	}
}

// TestPassword: against a Mosquitto listener with a password file, the
// right password connects; a wrong one, or none, fails with
// ErrNotAuthorized.
func TestPassword(t *testing.T) {
	m := testbroker.StartMosquitto(t, &testbroker.MosquittoOptions{Username: "device1", Password: "s3cret"})
	cfg := dialConfig(m.URL())
	cfg.Username, cfg.Password = "device1", "s3cret"
	tr := dial(t, cfg)
	topic := uniqueTopic(t, "password")
	sub := subscribe(t, tr, topic)
	publish(t, tr, topic, []byte("authenticated"))
	expect(t, sub, "subscriber", topic, "authenticated")

	for name, creds := range map[string][2]string{
		"wrong password": {"device1", "wrong"},
		"unknown user":   {"device2", "s3cret"},
		"anonymous":      {"", ""},
	} {
		t.Run(name, func(t *testing.T) {
			bad := dialConfig(m.URL())
			bad.Username, bad.Password = creds[0], creds[1]
			tr, err := mqtt.Dial(opContext(t), bad)
			if err == nil {
				_ = tr.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			if !errors.Is(err, mqtt.ErrNotAuthorized) {
				t.Fatalf("Dial = %v, want %v", err, mqtt.ErrNotAuthorized)
			}
		})
	}
}
