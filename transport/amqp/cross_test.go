package amqp_test

import (
	"bytes"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// TestCrossProtocol runs E4 across protocols through RabbitMQ's MQTT
// plugin, which maps MQTT topic "a/b" to routing key "a.b" on amq.topic:
// a device on MQTT and an application on AMQP, each with its own E4
// client holding the same topic key, exchange protected messages in both
// directions, and each receives the other's under the canonical topic its
// key is bound to. A bare AMQP consumer sees only ciphertext.
func TestCrossProtocol(t *testing.T) {
	r := broker(t)
	topicKey := e4Key(t)
	up := uniqueTopic(t, "device/up")     // MQTT -> AMQP
	down := uniqueTopic(t, "device/down") // AMQP -> MQTT

	mqttTr, err := mqtt.Dial(testContext(t), mqtt.Config{Brokers: []string{r.MQTTURL()}})
	if err != nil {
		t.Fatalf("mqtt.Dial to the RabbitMQ MQTT plugin: %v", err)
	}
	device := protect(t, mqttTr, e4Client(t, "device", up, topicKey))
	if err := device.Client().SetTopicKey(topicKey, down); err != nil {
		t.Fatal(err)
	}
	app := protect(t, dial(t, testConfig(r)), e4Client(t, "app", up, topicKey))
	if err := app.Client().SetTopicKey(topicKey, down); err != nil {
		t.Fatal(err)
	}
	wireCh := rawChannel(t, r)
	upKey, err := amqp.RoutingKey(up)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := wireCh.Consume(bareQueue(t, wireCh, upKey, nil), "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	appSub, err := app.Subscribe(testContext(t), up)
	if err != nil {
		t.Fatal(err)
	}
	deviceSub, err := device.Subscribe(testContext(t), uniqueTopicParent(down)+"/+")
	if err != nil {
		t.Fatal(err)
	}

	reading := []byte("MQTT -> AMQP: 21.5 C")
	if err := device.Publish(testContext(t), up, reading); err != nil {
		t.Fatalf("publishing on MQTT: %v", err)
	}
	expect(t, appSub, "AMQP subscriber", up, reading)

	select {
	case d := <-wire:
		if bytes.Contains(d.Body, reading) || len(d.Body) != len(reading)+e4.SKOverhead {
			t.Errorf("a bare AMQP consumer got %q, want ciphertext", d.Body)
		}
	case <-testContext(t).Done():
		t.Fatal("the bare AMQP consumer got nothing")
	}

	command := []byte("AMQP -> MQTT: set point 19 C")
	if err := app.Publish(testContext(t), down, command); err != nil {
		t.Fatalf("publishing on AMQP: %v", err)
	}
	expect(t, deviceSub, "MQTT subscriber", down, command)
}

// uniqueTopicParent drops the last level of a topic.
func uniqueTopicParent(topic string) string {
	for i := len(topic) - 1; i >= 0; i-- {
		if topic[i] == '/' {
			return topic[:i]
		}
	}
	return topic
}

// protect wraps tr with c, closed when the test ends.
func protect(t testing.TB, tr transport.Transport, c *e4.Client) *e4transport.Protected {
	t.Helper()
	p, err := e4transport.Protect(testContext(t), tr, c, nil)
	if err != nil {
		tr.Close()
		t.Fatalf("Protect: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// expect receives one message and checks its topic and plaintext.
func expect(t testing.TB, sub transport.Subscription, who, topic string, want []byte) {
	t.Helper()
	m, err := sub.Receive(testContext(t))
	if err != nil {
		t.Fatalf("%s: Receive: %v", who, err)
	}
	if m.Topic != topic || !bytes.Equal(m.Payload, want) {
		t.Errorf("%s got %q on %q, want %q on %q", who, m.Payload, m.Topic, want, topic)
	}
}
