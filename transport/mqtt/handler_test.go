package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/mqtt"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// received is what a wrapped handler or its error callback saw.
type received struct {
	topic, payload string
	qos            byte
	err            error
}

// TestFromClientRefusesWithoutResubscribe: a paho client that reconnects by
// itself but was built without ResubscribeOnConnect is refused by
// FromClient and Protect with ErrNoResubscribe, instead of getting a
// Transport whose subscriptions stop at the first reconnection; without
// AutoReconnect it is accepted.
func TestFromClientRefusesWithoutResubscribe(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	connect := func(autoReconnect bool) paho.Client {
		opts := paho.NewClientOptions().AddBroker(m.URL()).SetClientID("app-" + randomHex(6)).
			SetAutoReconnect(autoReconnect).
			SetOnConnectHandler(func(paho.Client) {}) // the application's own, not composed
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(opTimeout) || tok.Error() != nil {
			t.Fatalf("connecting: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	reconnecting := connect(true)
	if _, err := mqtt.FromClient(reconnecting, nil); !errors.Is(err, mqtt.ErrNoResubscribe) {
		t.Fatalf("FromClient without ResubscribeOnConnect: %v, want ErrNoResubscribe", err)
	}
	e4c := newE4Client(t, "device", newKey(t), "a/b")
	_, err := mqtt.Protect(opContext(t), reconnecting, e4c, nil, nil)
	if !errors.Is(err, mqtt.ErrNoResubscribe) || !strings.Contains(err.Error(), "mqtt.ResubscribeOnConnect(yourHandler)") {
		t.Fatalf("Protect without ResubscribeOnConnect: %v, want ErrNoResubscribe saying what to add", err)
	}
	tr, err := mqtt.FromClient(connect(false), nil)
	if err != nil {
		t.Fatalf("FromClient on a client without AutoReconnect: %v", err)
	}
	_ = tr.Close()
}

// TestHandlerExistingApp: an application that subscribes with paho
// callbacks in its OnConnect handler adds E4 by wrapping the handler. The
// handler receives plaintext with the message's topic and QoS; an
// unreadable message goes to the error callback only; after a Mosquitto
// restart both the application's own subscription and the control topic
// of the Protected transport work again (a command from C2 installs a key
// for a new topic, whose messages then reach the handler).
func TestHandlerExistingApp(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	base := uniqueTopic(t)
	topic, later := base+"/kitchen/temp", base+"/hall/temp"
	key, clientKey := newKey(t), newKey(t)
	device, err := e4.NewSymKeyClient(e4.IDFromName("app-"+randomHex(4)), clientKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := device.SetTopicKey(key, topic); err != nil {
		t.Fatal(err)
	}

	got := make(chan received, 16)
	onReading := func(_ paho.Client, msg paho.Message) {
		got <- received{topic: msg.Topic(), payload: string(msg.Payload()), qos: msg.Qos()}
	}
	onUnreadable := func(topic string, err error) { got <- received{topic: topic, err: err} }
	app := appClient(t, m.URL(), func(c paho.Client) {
		c.Subscribe(base+"/+/temp", 1, mqtt.Handler(device, onReading, onUnreadable))
	})
	p, err := mqtt.Protect(opContext(t), app, device, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	peer := newE4Client(t, "peer", key, topic)
	bare := dial(t, dialConfig(m.URL()))

	// The OnConnect subscription runs in paho's goroutine: publish until
	// the first message arrives.
	round := 0
	first := awaitReceived(t, got, func() {
		round++
		wire, _ := peer.Protect(nil, fmt.Appendf(nil, "21.5 C #%d", round), topic)
		publish(t, bare, topic, wire)
	})
	if first.err != nil || first.topic != topic || !strings.HasPrefix(first.payload, "21.5 C #") || first.qos != 1 {
		t.Fatalf("the handler got %+v, want 21.5 C on %s at QoS 1", first, topic)
	}
	publish(t, bare, topic, []byte("not an E4 message at all"))
	if r := nextError(t, got); r.topic != topic || r.payload != "" {
		t.Fatalf("an unreadable message gave %+v, want an error for %s without payload", r, topic)
	}

	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	newKeyForLater := newKey(t)
	cmd, err := command.NewSetTopicKey(newKeyForLater, e4.HashTopic(later))
	if err != nil {
		t.Fatal(err)
	}
	peerLater := newE4Client(t, "peer-later", newKeyForLater, later)
	r := awaitReceived(t, got, func() {
		// C2's command, then a message that needs its key; both are sent
		// again until the handler hears the message.
		protected, err := e4.ProtectCommand(cmd, clientKey, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		publishCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_ = bare.Publish(publishCtx, device.ControlTopic(), protected)
		round++
		wire, _ := peerLater.Protect(nil, fmt.Appendf(nil, "19.0 C #%d", round), later)
		_ = bare.Publish(publishCtx, later, wire)
	})
	for r.err == nil && r.topic == topic { // a reading of the first round sent twice
		r = awaitReceived(t, got, func() {})
	}
	if r.err != nil || r.topic != later || !strings.HasPrefix(r.payload, "19.0 C #") {
		t.Fatalf("after the restart the handler got %+v, want 19.0 C on %s", r, later)
	}
}

// awaitReceived calls send every half second until something arrives that
// is not an error for a topic without a key (sent while the command that
// brings it was on its way), and returns it.
func awaitReceived(t *testing.T, got <-chan received, send func()) received {
	t.Helper()
	deadline := time.After(opTimeout)
	for {
		send()
		select {
		case r := <-got:
			if errors.Is(r.err, e4.ErrTopicKeyNotFound) {
				continue
			}
			return r
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatal("nothing reached the handler")
		}
	}
}

// nextError returns the next report of the error callback, skipping
// readings (the first rounds may have delivered more than one).
func nextError(t *testing.T, got <-chan received) received {
	t.Helper()
	timeout := time.After(opTimeout)
	for {
		select {
		case r := <-got:
			if r.err != nil {
				return r
			}
		case <-timeout:
			t.Fatal("nothing reached the error callback")
		}
	}
}

// fakeMessage is a paho message for calling a handler directly.
type fakeMessage struct {
	topic   string
	payload []byte
	acked   bool
}

func (m *fakeMessage) Duplicate() bool   { return false }
func (m *fakeMessage) Qos() byte         { return 2 }
func (m *fakeMessage) Retained() bool    { return true }
func (m *fakeMessage) Topic() string     { return m.topic }
func (m *fakeMessage) MessageID() uint16 { return 7 }
func (m *fakeMessage) Payload() []byte   { return m.payload }
func (m *fakeMessage) Ack()              { m.acked = true }

// TestHandlerSkipsProtocolTopics: messages on the client's control topic
// and the topics below it (matched by a wide filter) reach neither the
// handler nor the error callback, and a command there is not applied a
// second time by the handler; the flags and Ack of a delivered message
// are the received one's.
func TestHandlerSkipsProtocolTopics(t *testing.T) {
	clientKey, key := newKey(t), newKey(t)
	device, err := e4.NewSymKeyClient(e4.IDFromName("skip"), clientKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	h := mqtt.Handler(device, func(_ paho.Client, m paho.Message) {
		calls = append(calls, "handler "+m.Topic())
		if !m.Retained() || m.Qos() != 2 || m.MessageID() != 7 {
			t.Errorf("the plaintext message lost its flags: retained %v, QoS %d, id %d", m.Retained(), m.Qos(), m.MessageID())
		}
		m.Ack()
	}, func(topic string, err error) { calls = append(calls, "error "+topic) })

	cmd, err := command.NewSetTopicKey(key, e4.HashTopic("a/b"))
	if err != nil {
		t.Fatal(err)
	}
	protected, err := e4.ProtectCommand(cmd, clientKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{device.ControlTopic(), device.ControlTopic() + "/ack", device.ControlTopic() + "/sync"} {
		h(nil, &fakeMessage{topic: topic, payload: protected})
	}
	if len(calls) != 0 {
		t.Fatalf("protocol topics reached the application: %v", calls)
	}
	if _, err := device.Protect(nil, []byte("x"), "a/b"); !errors.Is(err, e4.ErrTopicKeyNotFound) {
		t.Fatalf("the handler applied a command from the control topic (Protect: %v)", err)
	}
	if err := device.SetTopicKey(key, "a/b"); err != nil {
		t.Fatal(err)
	}
	wire, err := device.Protect(nil, []byte("x"), "a/b")
	if err != nil {
		t.Fatal(err)
	}
	msg := &fakeMessage{topic: "a/b", payload: wire}
	h(nil, msg)
	h(nil, &fakeMessage{topic: device.ControlTopic() + "x", payload: wire}) // not below the control topic
	if want := []string{"handler a/b", "error " + device.ControlTopic() + "x"}; strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	if !msg.acked {
		t.Fatal("Ack on the plaintext message did not reach the received one")
	}
}

// connectedDouble is a paho.Client of another implementation, as an
// application's tests may pass: connected, with no options behind its
// OptionsReader.
type connectedDouble struct{ paho.Client }

func (connectedDouble) IsConnected() bool                       { return true }
func (connectedDouble) OptionsReader() paho.ClientOptionsReader { return paho.ClientOptionsReader{} }

// TestFromClientDouble: FromClient does not panic on a client whose
// options cannot be read; it takes it as one that does not reconnect.
func TestFromClientDouble(t *testing.T) {
	tr, err := mqtt.FromClient(connectedDouble{}, nil)
	if err != nil {
		t.Fatalf("FromClient on a test double: %v", err)
	}
	_ = tr.Close()
}
