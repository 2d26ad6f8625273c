// Package testdevice runs, inside a test, a minimal E4 device over a real
// MQTT broker: it applies the commands C2 sends to its control topic and
// acknowledges each, as e4kit devices do by default. Tests of C2's API and
// CLI use it to stand for a device without going through e4transport.Protect.
package testdevice

import (
	"context"
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// StartAcking connects the SK device name, holding client key key, to the
// MQTT broker at brokerURL. It is subscribed to its control topic when the
// function returns, and stops when the test ends. A command it refuses
// (other than a replay) fails the test.
func StartAcking(t testing.TB, brokerURL, name string, key []byte) {
	t.Helper()
	id := e4.IDFromName(name)
	// e4's defaults accept the commands C2 dates ahead of the clock
	// (DispatchConfig.CommandLead, within Config.CommandFutureSkew).
	dev, err := e4.NewSymKeyClient(id, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{brokerURL}, ClientID: "device-" + name})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sub, err := tr.Subscribe(ctx, e4.ControlTopic(id))
	if err != nil {
		cancel()
		tr.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
		tr.Close()
	})
	go func() {
		defer close(done)
		for {
			msg, err := sub.Receive(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, transport.ErrClosed) {
					t.Errorf("device %s: %v", name, err)
				}
				return
			}
			_, ack, err := dev.HandleCommandAck(msg.Payload)
			if err != nil && !errors.Is(err, e4.ErrReplay) {
				t.Errorf("device %s refused a command: %v", name, err)
			}
			if ack != nil {
				if err := tr.Publish(ctx, e4.AckTopic(id), ack); err != nil && ctx.Err() == nil {
					t.Errorf("device %s acknowledging: %v", name, err)
				}
			}
		}
	}()
}
