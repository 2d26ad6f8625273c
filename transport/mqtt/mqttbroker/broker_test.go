package mqttbroker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport/mqtt"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

func opContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, addr string, opts *mqttbroker.Options) *mqttbroker.Broker {
	t.Helper()
	b, err := mqttbroker.Start(addr, opts)
	if err != nil {
		t.Fatalf("Start(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func dial(t *testing.T, url, user, pass string) (*mqtt.Transport, error) {
	tr, err := mqtt.Dial(opContext(t), mqtt.Config{Brokers: []string{url}, Username: user, Password: pass})
	if err == nil {
		t.Cleanup(func() { _ = tr.Close() })
	}
	return tr, err
}

// roundTrip publishes one message through tr to itself.
func roundTrip(t *testing.T, tr *mqtt.Transport) {
	t.Helper()
	sub, err := tr.Subscribe(opContext(t), "e4kit/broker-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(opContext(t), "e4kit/broker-test", []byte("ping")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Receive(opContext(t))
	if err != nil || string(m.Payload) != "ping" {
		t.Fatalf("Receive = %v, %v; want ping", m, err)
	}
}

// TestStartAnyPort: "127.0.0.1:0" picks a port, reported by Addr and URL,
// where anonymous clients are served.
func TestStartAnyPort(t *testing.T) {
	b := start(t, "127.0.0.1:0", nil)
	if strings.HasSuffix(b.Addr(), ":0") || b.URL() != "tcp://"+b.Addr() {
		t.Fatalf("Addr() = %q, URL() = %q", b.Addr(), b.URL())
	}
	tr, err := dial(t, b.URL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, tr)
}

// TestCredentials: with WithCredentials only the exact username and
// password connect; a "*" in the password is no pattern.
func TestCredentials(t *testing.T) {
	b := start(t, "127.0.0.1:0", &mqttbroker.Options{Username: "device", Password: "pa*"})
	tr, err := dial(t, b.URL(), "device", "pa*")
	if err != nil {
		t.Fatalf("right credentials: %v", err)
	}
	roundTrip(t, tr)
	for name, creds := range map[string][2]string{
		"wrong password":  {"device", "wrong"},
		"pattern-like":    {"device", "pass"},
		"wrong user":      {"other", "pa*"},
		"no credentials":  {"", ""},
		"password prefix": {"device", "pa"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dial(t, b.URL(), creds[0], creds[1])
			if !errors.Is(err, mqtt.ErrNotAuthorized) {
				t.Fatalf("Dial = %v, want %v", err, mqtt.ErrNotAuthorized)
			}
		})
	}
}

// TestCloseAndRestart: Close is idempotent and stops serving; a broker
// started again on the same address serves again.
func TestCloseAndRestart(t *testing.T) {
	b := start(t, "127.0.0.1:0", nil)
	addr := b.Addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := dial(t, b.URL(), "", ""); err == nil {
		t.Fatal("Dial to a closed broker succeeded")
	}
	again := start(t, addr, nil)
	tr, err := dial(t, again.URL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, tr)
}

// TestStartBusyAddress: an address in use is an error, not a hang.
func TestStartBusyAddress(t *testing.T) {
	b := start(t, "127.0.0.1:0", nil)
	if other, err := mqttbroker.Start(b.Addr(), nil); err == nil {
		_ = other.Close()
		t.Fatal("Start on a busy address succeeded")
	}
}
