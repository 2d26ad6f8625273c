package e4transport_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

var (
	deviceKey = bytes.Repeat([]byte{0x11}, e4.KeyLen)
	topicKey  = bytes.Repeat([]byte{0x22}, e4.KeyLen)
)

func newDevice(t *testing.T, name string) *e4.Client {
	t.Helper()
	c, err := e4.NewSymKeyClient(e4.IDFromName(name), deviceKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drops records what a Protected transport reported as dropped.
type drops struct {
	mu     sync.Mutex
	topics []string
	errs   []error
}

func (d *drops) record(topic string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.topics = append(d.topics, topic)
	d.errs = append(d.errs, err)
}

func (d *drops) wait(t *testing.T, n int) []error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		if len(d.errs) >= n {
			defer d.mu.Unlock()
			return append([]error(nil), d.errs...)
		}
		d.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("fewer than %d drops reported", n)
	return nil
}

func (d *drops) snapshot() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]error(nil), d.errs...)
}

func protect(t *testing.T, b *loopback.Broker, c *e4.Client, opts *e4transport.Options) *e4transport.Protected {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := e4transport.Protect(ctx, b.Connect(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func receive(t *testing.T, sub transport.Subscription) *transport.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestProtectedStrictByDefault(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	var d drops
	sub := protect(t, b, newDevice(t, "subscriber"), &e4transport.Options{OnDrop: d.record})
	// The publisher sends no sync request: published at any time after
	// Protect returns, it would reach the subscriber's "#" as one more
	// message without a key.
	pub := protect(t, b, newDevice(t, "publisher"), &e4transport.Options{NoSync: true})
	bare := b.Connect()
	defer bare.Close()

	// Publishing on a topic without a key fails; nothing leaves in clear.
	if err := pub.Publish(ctx, "no/key", []byte("secret")); !errors.Is(err, e4.ErrTopicKeyNotFound) {
		t.Fatalf("publish without key: %v", err)
	}
	s, err := sub.Subscribe(ctx, "#")
	if err != nil {
		t.Fatal(err)
	}
	// Plaintext from a bare publisher, a tampered message and a replay are
	// dropped and reported; the next good message is delivered.
	for _, c := range []*e4.Client{sub.Client(), pub.Client()} {
		if err := c.SetTopicKey(topicKey, "room/temp"); err != nil {
			t.Fatal(err)
		}
	}
	if err := bare.Publish(ctx, "other/topic", []byte("plaintext")); err != nil {
		t.Fatal(err)
	}
	good, err := pub.Client().Protect(nil, []byte("21.5"), "room/temp")
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(good)
	tampered[len(tampered)-1] ^= 1
	for _, m := range [][]byte{tampered, good, good} {
		if err := bare.Publish(ctx, "room/temp", m); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, "room/temp", []byte("22.0")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"21.5", "22.0"} {
		if m := receive(t, s); m.Topic != "room/temp" || string(m.Payload) != want {
			t.Fatalf("got %s %q, want room/temp %q", m.Topic, m.Payload, want)
		}
	}
	errs := d.wait(t, 3)
	wantErrs := []error{e4.ErrTopicKeyNotFound, e4.ErrAuthentication, e4.ErrReplay}
	for i, want := range wantErrs {
		if !errors.Is(errs[i], want) {
			t.Errorf("drop %d: %v, want %v", i, errs[i], want)
		}
	}
	if sub.Dropped() != 3 {
		t.Errorf("Dropped() = %d, want 3", sub.Dropped())
	}
}

func TestProtectedPermissivePolicies(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	opts := &e4transport.Options{DeliverUnkeyed: true, PublishUnkeyed: true}
	sub := protect(t, b, newDevice(t, "subscriber"), opts)
	pub := protect(t, b, newDevice(t, "publisher"), opts)
	s, err := sub.Subscribe(ctx, "public/#")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "public/notice", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, s); string(m.Payload) != "hello" {
		t.Fatalf("unkeyed message: %q", m.Payload)
	}
}

func TestProtectedAppliesCommands(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	applied := make(chan error, 4)
	dev := protect(t, b, newDevice(t, "device"), &e4transport.Options{
		OnCommand: func(_ command.Code, err error) { applied <- err },
	})
	c2 := b.Connect()
	defer c2.Close()
	cmd, err := command.NewSetTopicKey(topicKey, e4.HashTopic("room/temp"))
	if err != nil {
		t.Fatal(err)
	}
	wire, err := e4.ProtectCommand(cmd, deviceKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Publish(ctx, dev.Client().ControlTopic(), wire); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-applied:
		if err != nil {
			t.Fatalf("command refused: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("command not applied")
	}
	if !dev.Client().HasTopicKey("room/temp") || dev.Commands() != 1 {
		t.Fatalf("key not installed by the command (commands=%d)", dev.Commands())
	}
	// A forged command is refused and changes nothing.
	forged, _ := e4.ProtectCommand(command.NewResetTopics(), topicKey, time.Now())
	if err := c2.Publish(ctx, dev.Client().ControlTopic(), forged); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; !errors.Is(err, e4.ErrAuthentication) {
		t.Fatalf("forged command: %v", err)
	}
	if !dev.Client().HasTopicKey("room/temp") {
		t.Fatal("forged command took effect")
	}
}

func TestProtectedClose(t *testing.T) {
	b := loopback.NewBroker()
	p := protect(t, b, newDevice(t, "device"), nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Publish(context.Background(), "a", nil); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, err := p.Subscribe(context.Background(), "a"); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

// sendSetTopicKey plays C2: it sends dev a SetTopicKey command.
func sendSetTopicKey(t *testing.T, c2 transport.Transport, dev *e4.Client, key []byte, topic string) {
	t.Helper()
	cmd, err := command.NewSetTopicKey(key, e4.HashTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	wire, err := e4.ProtectCommand(cmd, deviceKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Publish(context.Background(), dev.ControlTopic(), wire); err != nil {
		t.Fatal(err)
	}
}

func TestAwaitKeyKeepsMessagesThatArriveBeforeTheirKey(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	c2 := b.Connect()
	defer c2.Close()
	var dropped drops
	// One wait of awaitKey must fit well within receive's 5 s, two must not.
	const awaitKey = 2 * time.Second
	reader := protect(t, b, newDevice(t, "reader"), &e4transport.Options{AwaitKey: awaitKey, OnDrop: dropped.record})
	sender := newDevice(t, "sender")
	if err := sender.SetTopicKey(topicKey, "room/temp"); err != nil {
		t.Fatal(err)
	}
	sub, err := reader.Subscribe(ctx, "room/#")
	if err != nil {
		t.Fatal(err)
	}
	raw := b.Connect()
	defer raw.Close()
	// Two messages under a key the reader does not have yet, then the key.
	for _, text := range []string{"first", "second"} {
		wire, err := sender.Protect(nil, []byte(text), "room/temp")
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Publish(ctx, "room/temp", wire); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		sendSetTopicKey(t, c2, reader.Client(), topicKey, "room/temp")
	}()
	for _, want := range []string{"first", "second"} {
		if m := receive(t, sub); string(m.Payload) != want {
			t.Fatalf("got %q, want %q (order or message lost)", m.Payload, want)
		}
	}
	if reader.Dropped() != 0 {
		t.Fatalf("%d dropped", reader.Dropped())
	}

}

func TestAwaitKeyCancelledReceiveLosesNothing(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	c2 := b.Connect()
	defer c2.Close()
	reader := protect(t, b, newDevice(t, "reader"), &e4transport.Options{AwaitKey: time.Minute})
	sender := newDevice(t, "sender")
	_ = sender.SetTopicKey(topicKey, "t")
	sub, err := reader.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	wire, err := sender.Protect(nil, []byte("kept"), "t")
	if err != nil {
		t.Fatal(err)
	}
	raw := b.Connect()
	defer raw.Close()
	if err := raw.Publish(ctx, "t", wire); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := sub.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive while awaiting a key: %v", err)
	}
	sendSetTopicKey(t, c2, reader.Client(), topicKey, "t")
	if m := receive(t, sub); string(m.Payload) != "kept" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestDeviceAcknowledgesCommandsByDefault(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	c2 := b.Connect()
	defer c2.Close()
	dev := protect(t, b, newDevice(t, "acker"), nil)
	acks, err := c2.Subscribe(ctx, "e4/+/ack")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := command.NewSetTopicKey(topicKey, e4.HashTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	wire, err := e4.ProtectCommand(cmd, deviceKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Publish(ctx, dev.Client().ControlTopic(), wire); err != nil {
		t.Fatal(err)
	}
	m := receive(t, acks)
	if m.Topic != e4.AckTopic(dev.Client().ID()) {
		t.Fatalf("ack on %s", m.Topic)
	}
	digest, status, err := e4.OpenAck(m.Payload, deviceKey, nil)
	if err != nil || status != e4.AckApplied || digest != e4.CommandDigest(wire) {
		t.Fatalf("OpenAck = %x, %v, %v", digest, status, err)
	}
	// A forged command gets no acknowledgement.
	forged, err := e4.ProtectCommand(cmd, topicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Publish(ctx, dev.Client().ControlTopic(), forged); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if m, err := acks.Receive(short); err == nil {
		t.Fatalf("forged command acknowledged on %s", m.Topic)
	}
}

func TestNoAckPublishesNoAcknowledgement(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	c2 := b.Connect()
	defer c2.Close()
	applied := make(chan error, 1)
	dev := protect(t, b, newDevice(t, "silent"), &e4transport.Options{
		NoAck:     true,
		OnCommand: func(_ command.Code, err error) { applied <- err },
	})
	acks, err := c2.Subscribe(ctx, "e4/+/ack")
	if err != nil {
		t.Fatal(err)
	}
	sendSetTopicKey(t, c2, dev.Client(), topicKey, "t")
	if err := <-applied; err != nil {
		t.Fatalf("command refused: %v", err)
	}
	// The loopback broker delivers in publication order: a marker
	// published now arrives after any acknowledgement already sent.
	if err := c2.Publish(ctx, "e4/marker/ack", []byte("end")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, acks); m.Topic != "e4/marker/ack" {
		t.Fatalf("with NoAck, a message on %s", m.Topic)
	}
}
