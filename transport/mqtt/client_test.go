package mqtt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// appClient makes and connects a paho client the way an application
// would, with its own options, composing its OnConnect handler with
// ResubscribeOnConnect.
func appClient(t *testing.T, url string, onConnect paho.OnConnectHandler) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID("app-" + randomHex(6)).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(2 * time.Second).
		SetOnConnectHandler(mqtt.ResubscribeOnConnect(onConnect))
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(opTimeout) || tok.Error() != nil {
		t.Fatalf("connecting the application's client: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// newE4ClientTB is newE4Client for benchmarks.
func newE4ClientTB(t testing.TB, topicKey []byte, topic string) *e4.Client {
	t.Helper()
	return newE4Client(t, "bench", topicKey, topic)
}

// newE4Client returns a symmetric-key client holding key for topic.
func newE4Client(t testing.TB, name string, topicKey []byte, topic string) *e4.Client {
	t.Helper()
	c, err := e4.NewSymKeyClient(e4.IDFromName(name+randomHex(4)), newKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetTopicKey(topicKey, topic); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProtectAppClient: mqtt.Protect adds E4 to an application's own paho
// client; its messages reach another E4 client as plaintext while the
// broker, seen through a bare subscriber, carries only E4 ciphertext; and
// closing the protected transport leaves the application's client
// connected.
func TestProtectAppClient(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	topic := uniqueTopic(t, "sensors", "temp")
	key := newKey(t)

	app := appClient(t, m.URL(), nil)
	dev, err := mqtt.Protect(opContext(t), app, newE4Client(t, "device", key, topic), nil, nil)
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	peer, err := e4transport.Protect(opContext(t), dial(t, dialConfig(m.URL())), newE4Client(t, "peer", key, topic), nil)
	if err != nil {
		t.Fatal(err)
	}
	peerSub := subscribe(t, peer, topic)
	observer := subscribe(t, dial(t, dialConfig(m.URL())), topic)
	devSub := subscribe(t, dev, topic)

	secret := []byte("reading 21.5 C")
	publish(t, dev, topic, secret)
	expect(t, peerSub, "protected peer", topic, string(secret))
	raw := receive(t, observer, "bare observer")
	if bytes.Contains(raw.Payload, secret) || len(raw.Payload) != len(secret)+e4.SKOverhead {
		t.Fatalf("the broker carried %x (%d bytes), want %d bytes of E4 ciphertext", raw.Payload, len(raw.Payload), len(secret)+e4.SKOverhead)
	}
	if plain, err := e4.UnprotectSymKey(nil, raw.Payload, key, nil); err != nil || !bytes.Equal(plain, secret) {
		t.Fatalf("the observed bytes are not E4 under the topic key: %q, %v", plain, err)
	}
	expect(t, devSub, "the device's own subscription", topic, string(secret))

	publish(t, peer, topic, []byte("set point 19"))
	expect(t, devSub, "device subscriber", topic, "set point 19")

	if err := dev.Close(); err != nil {
		t.Fatalf("closing the protected transport: %v", err)
	}
	if !app.IsConnectionOpen() {
		t.Fatal("closing the protected transport disconnected the application's client")
	}
	if tok := app.Publish(topic, 1, false, []byte("plain, by the app")); !tok.WaitTimeout(opTimeout) || tok.Error() != nil {
		t.Fatalf("the application's client no longer publishes: %v", tok.Error())
	}
}

// TestFromClientOnePerClient: a client wraps into one live Transport at a
// time; once it is closed, the client may be wrapped again.
func TestFromClientOnePerClient(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	app := appClient(t, m.URL(), nil)
	first, err := mqtt.FromClient(app, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mqtt.FromClient(app, nil); err == nil {
		t.Fatal("a second FromClient on a wrapped client succeeded, want an error")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := mqtt.FromClient(app, nil)
	if err != nil {
		t.Fatalf("FromClient after Close: %v", err)
	}
	_ = second.Close()

	unconnected := paho.NewClient(paho.NewClientOptions().AddBroker(m.URL()))
	if _, err := mqtt.FromClient(unconnected, nil); err == nil {
		t.Fatal("FromClient on a client never connected succeeded, want an error")
	}
}

// TestFromClientTakesConfig: FromClient applies the Config fields that are
// the Transport's own (here MaxMessageSize and DefaultQoS) to the
// application's client: an invalid default QoS is refused, and a message
// over the size bound is dropped and counted while the next one arrives.
func TestFromClientTakesConfig(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	app := appClient(t, m.URL(), nil)
	badQoS := transport.QoS(3)
	if _, err := mqtt.FromClient(app, &mqtt.Config{DefaultQoS: &badQoS}); err == nil {
		t.Fatal("FromClient with default QoS 3 succeeded, want an error")
	}
	tr, err := mqtt.FromClient(app, &mqtt.Config{MaxMessageSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	topic := uniqueTopic(t, "fromclient-config")
	sub := subscribe(t, tr, topic)
	pub := dial(t, dialConfig(m.URL()))
	publish(t, pub, topic, make([]byte, 17))
	publish(t, pub, topic, []byte("small enough"))
	expect(t, sub, "the subscription of a FromClient transport", topic, "small enough")
	if n := tr.Oversized(); n != 1 {
		t.Errorf("Oversized() = %d, want 1 (the 17-byte message)", n)
	}
}

// TestFromClientResubscribes: with ResubscribeOnConnect composed into the
// application's options, a FromClient subscription resumes after a
// Mosquitto restart (clean session, broker without persistence), and the
// application's own handler still runs.
func TestFromClientResubscribes(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	var connects atomic.Int32
	app := appClient(t, m.URL(), func(paho.Client) { connects.Add(1) })
	tr, err := mqtt.FromClient(app, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	topic := uniqueTopic(t, "resubscribe")
	sub := subscribe(t, tr, topic)
	pub := dial(t, dialConfig(m.URL()))

	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := awaitDelivery(ctx, pub, sub, topic); err != nil {
		t.Fatal(err)
	}
	if n := connects.Load(); n < 2 {
		t.Errorf("the application's OnConnect ran %d times, want at least 2", n)
	}
}

// awaitDelivery publishes a fresh message every round until one arrives:
// messages sent while a client reconnects may be lost, delivery must
// resume.
func awaitDelivery(ctx context.Context, pub transport.Transport, sub transport.Subscription, topic string) error {
	sent := make(map[string]bool)
	for round := 0; ctx.Err() == nil; round++ {
		payload := fmt.Sprintf("after restart %d", round)
		pubCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if pub.Publish(pubCtx, topic, []byte(payload)) == nil {
			sent[payload] = true
		}
		cancel()
		recvCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		for {
			m, err := sub.Receive(recvCtx)
			if err != nil {
				break
			}
			if sent[string(m.Payload)] {
				cancel()
				return nil
			}
		}
		cancel()
	}
	return errors.New("delivery did not resume after the broker restart")
}
