package e4transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// brokerTimeout bounds each wait on a real broker.
const brokerTimeout = 30 * time.Second

// dialMosquitto connects to m, reconnecting quickly after a restart.
func dialMosquitto(t *testing.T, m *testbroker.Mosquitto) *mqtt.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{m.URL()}, MaxReconnectInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// receiveWithin waits for one message on sub.
func receiveWithin(t *testing.T, sub transport.Subscription) *transport.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	m, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// protectOver wraps inner for a device, closing it at the end of the test.
func protectOver(t *testing.T, inner transport.Transport, c *e4.Client, opts *e4transport.Options) *e4transport.Protected {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	p, err := e4transport.Protect(ctx, inner, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestDeviceAcknowledgesOverMosquitto: a device behind Protect with default
// options acknowledges an authentic command over a real broker, one with
// NoAck does not.
func TestDeviceAcknowledgesOverMosquitto(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	ctx := context.Background()
	c2 := dialMosquitto(t, m)
	acks, err := c2.Subscribe(ctx, "e4/+/ack")
	if err != nil {
		t.Fatal(err)
	}
	for _, noAck := range []bool{true, false} {
		name := "acking"
		if noAck {
			name = "silent"
		}
		applied := make(chan error, 1)
		dev := protectOver(t, dialMosquitto(t, m), newDevice(t, name), &e4transport.Options{
			NoAck:     noAck,
			OnCommand: func(_ command.Code, err error) { applied <- err },
		})
		sendSetTopicKey(t, c2, dev.Client(), topicKey, "room/"+name)
		if err := <-applied; err != nil {
			t.Fatalf("%s: command refused: %v", name, err)
		}
	}
	// The silent device was commanded first: if it had acknowledged, its
	// acknowledgement would come first (one subscription, and each
	// device's QoS 1 acknowledgement was confirmed by the broker before
	// its OnCommand ran).
	msg := receiveWithin(t, acks)
	acker := e4.IDFromName("acking")
	if msg.Topic != e4.AckTopic(acker) {
		t.Fatalf("first acknowledgement on %s, want %s", msg.Topic, e4.AckTopic(acker))
	}
	if _, status, err := e4.OpenAck(msg.Payload, deviceKey, nil); err != nil || status != e4.AckApplied {
		t.Fatalf("OpenAck: %v, %v", status, err)
	}
}
