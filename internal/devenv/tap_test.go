package devenv

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// tapRig is a device reading Topic through the tap and the E4 decorator,
// beside a bare subscriber that sees what the broker carries.
type tapRig struct {
	tap    *tap
	device *e4transport.Protected
	sub    transport.Subscription
	bare   transport.Subscription
	broker *loopback.Broker
}

func newTapRig(t *testing.T, ctx context.Context) *tapRig {
	t.Helper()
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
	t.Cleanup(func() { device.Close() })
	sub, err := device.Subscribe(ctx, Topic)
	if err != nil {
		t.Fatal(err)
	}
	return &tapRig{tap: tp, device: device, sub: sub, bare: bare, broker: broker}
}

// checkShown reads the next message through the device and checks that
// the tap gives for it the wire bytes of wire, as a bare subscriber got
// them, and that it is want.
func (r *tapRig) checkShown(t *testing.T, ctx context.Context, wire *transport.Message, want []byte) {
	t.Helper()
	read, err := r.sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read.Payload, want) {
		t.Fatalf("device read %q, want %q", read.Payload, want)
	}
	head, size, ok := r.tap.take(read)
	if !ok {
		t.Fatalf("the tap has nothing for %q", read.Payload)
	}
	if size != len(wire.Payload) || !bytes.Equal(head, wire.Payload[:wireHead]) {
		t.Fatalf("beside %q the tap shows %x (%d B), the wire carried %x (%d B)", read.Payload, head, size, wire.Payload[:wireHead], len(wire.Payload))
	}
	if bytes.Contains(wire.Payload, []byte("boiler")) {
		t.Fatal("the wire carried plaintext")
	}
}

// What the dashboard shows as "broker sees" is the bytes on the wire, as a
// bare subscriber receives them, even after the device read (and the
// decorator unprotected in place) the message.
func TestTapShowsTheWireBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := newTapRig(t, ctx)
	payload := []byte(`{"from":"boiler-sensor","seq":1,"value":20.1}`)
	if err := r.device.Publish(ctx, Topic, payload); err != nil {
		t.Fatal(err)
	}
	wire, err := r.bare.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.checkShown(t, ctx, wire, payload)
	if _, _, ok := r.tap.take(wire); ok {
		t.Error("the tap kept a message it was never given")
	}
}

// A burst arrives before the device reads: the decorator unprotects the
// buffered messages together, so the tap has seen them all before the
// first is shown. Each line must still show its own message's wire bytes,
// also past a forged message the decorator drops, which the device never
// reads.
func TestTapPairsEachMessageOfABurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := newTapRig(t, ctx)
	var sent [][]byte
	for seq := 1; seq <= 6; seq++ {
		payload := fmt.Appendf(nil, `{"from":"boiler-sensor","seq":%d,"value":20.%d}`, seq, seq)
		if seq == 3 {
			forged := bytes.Repeat([]byte{0xee}, e4.SKOverhead+len(payload))
			if err := r.broker.Connect().Publish(ctx, Topic, forged); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.device.Publish(ctx, Topic, payload); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, payload)
	}
	var wires []*transport.Message
	for len(wires) < len(sent) {
		wire, err := r.bare.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(wire.Payload, bytes.Repeat([]byte{0xee}, 8)) {
			wires = append(wires, wire)
		}
	}
	for i, payload := range sent {
		r.checkShown(t, ctx, wires[i], payload)
	}
	if r.device.Dropped() != 1 {
		t.Fatalf("the decorator dropped %d messages, want the forged one", r.device.Dropped())
	}
}

// The tap forgets the oldest messages past tapDepth per topic, so unread
// ones (dropped, or never taken) cannot grow it without bound.
func TestTapIsBounded(t *testing.T) {
	tp := &tap{}
	msgs := make([]*transport.Message, tapDepth+5)
	for i := range msgs {
		msgs[i] = &transport.Message{Topic: Topic, Payload: bytes.Repeat([]byte{byte(i)}, 100)}
		tp.record(msgs[i])
	}
	if n := len(tp.seen[Topic]); n != tapDepth {
		t.Fatalf("the tap holds %d messages, want %d", n, tapDepth)
	}
	if _, _, ok := tp.take(msgs[0]); ok {
		t.Error("the oldest message is still held")
	}
	head, size, ok := tp.take(msgs[len(msgs)-1])
	if !ok || size != 100 || len(head) != wireHead || head[0] != byte(len(msgs)-1) {
		t.Errorf("newest: head %x, size %d, ok %v", head, size, ok)
	}
}

// A device that keeps failing to read (the removed one) prints its first
// failure at once, then one line per unreadableEvery with the count since,
// not a line per message. synctest's clock makes the ten seconds instant.
func TestUnreadableReportedOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		out := &printer{w: &buf}
		d := &simDevice{name: "old-gateway"}
		fail := func(n int) {
			for range n {
				d.reportUnreadable(out, Topic, e4.ErrTopicKeyNotFound)
			}
		}
		fail(5)
		time.Sleep(unreadableEvery - time.Second)
		fail(3)
		if lines := strings.Count(buf.String(), "\n"); lines != 1 {
			t.Fatalf("%d lines within the interval, want 1:\n%s", lines, buf.String())
		}
		time.Sleep(time.Second)
		fail(1)
		want := "old-gateway      cannot read a message on " + Topic + ": " + e4.ErrTopicKeyNotFound.Error() + "\n" +
			"old-gateway      cannot read 8 more messages on " + Topic + ": " + e4.ErrTopicKeyNotFound.Error() + "\n"
		if buf.String() != want {
			t.Fatalf("output:\n%s\nwant:\n%s", buf.String(), want)
		}
	})
}
