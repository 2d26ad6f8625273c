package devenv

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// What the dashboard shows as "broker sees" is the bytes on the wire, as a
// bare subscriber receives them, even after the device read (and the
// decorator unprotected in place) the message.
func TestTapShowsTheWireBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	broker := loopback.NewBroker()
	key := bytes.Repeat([]byte{7}, e4.KeyLen)
	client, err := e4.NewSymKeyClient(e4.IDFromName("tap-test"), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetTopicKey(key, Topic); err != nil {
		t.Fatal(err)
	}
	bare, err := broker.Connect().Subscribe(ctx, Topic)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{Transport: broker.Connect()}
	device, err := e4transport.Protect(ctx, tp, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	sub, err := device.Subscribe(ctx, Topic)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"from":"boiler-sensor","seq":1,"value":20.1}`)
	if err := device.Publish(ctx, Topic, payload); err != nil {
		t.Fatal(err)
	}
	read, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := bare.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read.Payload, payload) {
		t.Fatalf("device read %q", read.Payload)
	}
	if shown := tp.last(); !bytes.Equal(shown, wire.Payload) {
		t.Fatalf("the tap shows %x, the wire carried %x", shown, wire.Payload)
	}
	if bytes.Contains(tp.last(), []byte("boiler")) {
		t.Fatal("the tap shows plaintext")
	}
}
