package e4transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// burstOutcome is what a reader made of a burst: the payloads delivered
// and the reasons of the drops, each sorted (a message held for its key
// may be delivered after later ones, on either path).
type burstOutcome struct {
	delivered []string
	drops     []string
	batched   uint64
}

// burstAwaitKey is long enough for the command mid-burst to be applied
// before the messages under its key are dropped, even under -race on a
// loaded machine.
const burstAwaitKey = 2 * time.Second

var (
	newTopicKey   = bytes.Repeat([]byte{0x44}, e4.KeyLen)
	staleTopicKey = bytes.Repeat([]byte{0x55}, e4.KeyLen)
	forgedKey     = bytes.Repeat([]byte{0x66}, e4.KeyLen)
)

// burstSetup is one run of the burst: the reader's transport, the one
// the burst (and C2's command) is published from, and the filter.
type burstSetup struct {
	reader, publisher transport.Transport
	filter            string
	// settled, if set, returns once the reader's transport has buffered
	// everything published before it was called.
	settled func(t *testing.T)
}

// sealer returns a client holding key for topic, to play a sender.
func sealer(t *testing.T, name string, key []byte, topic string) *e4.Client {
	t.Helper()
	c := newDevice(t, name)
	if err := c.SetTopicKey(key, topic); err != nil {
		t.Fatal(err)
	}
	return c
}

// runBurst publishes, before the reader receives anything, a burst that
// mixes good messages (more than one batch of them), a forgery, a replay,
// a message under a key older than the previous one, one on a topic
// without a key, one too short, and a key change from C2 followed by
// messages under the new key and under the replaced one. It returns what
// the reader, batching or not, made of it.
func runBurst(t *testing.T, s burstSetup, name string, batching bool) burstOutcome {
	t.Helper()
	ctx := context.Background()
	var dropped drops
	applied := make(chan error, 1)
	reader := protectOver(t, s.reader, newDevice(t, name), &e4transport.Options{
		AwaitKey: burstAwaitKey, OnDrop: dropped.record,
		OnCommand: func(_ command.Code, err error) { applied <- err },
	})
	e4transport.SetBatching(reader, batching)
	if err := reader.Client().SetTopicKey(topicKey, "burst/t"); err != nil {
		t.Fatal(err)
	}
	sub, err := reader.Subscribe(ctx, s.filter)
	if err != nil {
		t.Fatal(err)
	}
	sender := sealer(t, "sender", topicKey, "burst/t")
	renewed := sealer(t, "renewed", newTopicKey, "burst/t")
	stale := sealer(t, "stale", staleTopicKey, "burst/t")
	forger := sealer(t, "forger", forgedKey, "burst/t")
	_ = sender.SetTopicKey(topicKey, "burst/nokey")
	send := func(topic string, wire []byte) {
		t.Helper()
		if err := s.publisher.Publish(ctx, topic, wire, transport.WithQoS(transport.AtLeastOnce)); err != nil {
			t.Fatal(err)
		}
	}
	seal := func(c *e4.Client, text, topic string) []byte {
		t.Helper()
		wire, err := c.Protect(nil, []byte(text), topic)
		if err != nil {
			t.Fatal(err)
		}
		return wire
	}
	first := seal(sender, "good 0", "burst/t")
	send("burst/t", first)
	for i := 1; i < 20; i++ {
		send("burst/t", seal(sender, fmt.Sprintf("good %d", i), "burst/t"))
	}
	send("burst/t", seal(forger, "forged", "burst/t"))
	send("burst/t", first) // replayed
	send("burst/t", seal(stale, "stale key", "burst/t"))
	send("burst/nokey", seal(sender, "no key here", "burst/nokey"))
	send("burst/t", []byte("short"))
	sendSetTopicKey(t, s.publisher, reader.Client(), newTopicKey, "burst/t")
	send("burst/t", seal(renewed, "new key 1", "burst/t"))
	send("burst/t", seal(sender, "replaced key", "burst/t"))
	send("burst/t", seal(renewed, "new key 2", "burst/t"))
	if s.settled != nil {
		s.settled(t)
	}

	var out burstOutcome
	for range 23 {
		out.delivered = append(out.delivered, string(receiveWithin(t, sub).Payload))
	}
	if err := <-applied; err != nil {
		t.Fatalf("the key change was refused: %v", err)
	}
	// The held messages are dropped by a Receive that runs past their
	// time; it must deliver nothing more.
	wait, cancel := context.WithCancel(ctx)
	extra := make(chan error, 1)
	go func() {
		m, err := sub.Receive(wait)
		if err == nil {
			err = fmt.Errorf("delivered %q", m.Payload)
		}
		extra <- err
	}()
	errs := dropped.wait(t, 5)
	cancel()
	if err := <-extra; !errors.Is(err, context.Canceled) {
		t.Fatalf("after the burst: %v", err)
	}
	if got := dropped.snapshot(); len(got) != 5 {
		t.Fatalf("%d drops: %v", len(got), got)
	}
	for _, err := range errs {
		out.drops = append(out.drops, dropReason(err))
	}
	slices.Sort(out.delivered)
	slices.Sort(out.drops)
	out.batched = e4transport.BatchedMessages(reader)
	return out
}

// dropReason names the E4 error err wraps: the errors carry details that
// differ from one message to the next.
func dropReason(err error) string {
	for _, known := range []error{e4.ErrReplay, e4.ErrAuthentication, e4.ErrTopicKeyNotFound, e4.ErrInvalidLength, e4transport.ErrAwaitKeyFull} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	return err.Error()
}

// wantBurst is what a reader makes of runBurst's burst on either path.
func wantBurst() burstOutcome {
	var want burstOutcome
	for i := range 20 {
		want.delivered = append(want.delivered, fmt.Sprintf("good %d", i))
	}
	want.delivered = append(want.delivered, "new key 1", "new key 2", "replaced key")
	want.drops = []string{
		dropReason(e4.ErrAuthentication), dropReason(e4.ErrAuthentication), // forged, stale key
		dropReason(e4.ErrReplay), dropReason(e4.ErrTopicKeyNotFound), dropReason(e4.ErrInvalidLength),
	}
	slices.Sort(want.delivered)
	slices.Sort(want.drops)
	return want
}

// checkBurstPaths runs the burst one message at a time and in batches
// and checks both against wantBurst, and that the batch path batched.
func checkBurstPaths(t *testing.T, setup func(t *testing.T) burstSetup) {
	want := wantBurst()
	for _, batching := range []bool{false, true} {
		name := fmt.Sprintf("reader-batching-%v", batching)
		got := runBurst(t, setup(t), name, batching)
		if !slices.Equal(got.delivered, want.delivered) {
			t.Errorf("%s delivered %q\nwant %q", name, got.delivered, want.delivered)
		}
		if !slices.Equal(got.drops, want.drops) {
			t.Errorf("%s dropped %q\nwant %q", name, got.drops, want.drops)
		}
		switch {
		case batching && got.batched == 0:
			t.Errorf("%s: no message went through the batch path", name)
		case !batching && got.batched != 0:
			t.Errorf("%s: %d messages went through the batch path", name, got.batched)
		}
	}
}

// TestBatchReceiveMatchesSingleOverLoopback: with the whole burst buffered
// before the first Receive, the batch path (with a wide filter that also
// matches the reader's own control topic and acknowledgements) delivers
// and drops exactly what the one-at-a-time path does.
func TestBatchReceiveMatchesSingleOverLoopback(t *testing.T) {
	checkBurstPaths(t, func(t *testing.T) burstSetup {
		b := loopback.NewBroker()
		pub := b.Connect()
		t.Cleanup(func() { pub.Close() })
		return burstSetup{reader: b.Connect(), publisher: pub, filter: "#"}
	})
}

// TestBatchReceiveMatchesSingleOverMosquitto is the same burst over a
// real broker; the reader starts receiving once a marker published after
// the burst reached its connection, so the burst is buffered.
func TestBatchReceiveMatchesSingleOverMosquitto(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	checkBurstPaths(t, func(t *testing.T) burstSetup {
		reader, pub := dialMosquitto(t, m), dialMosquitto(t, m)
		marker, err := reader.Subscribe(context.Background(), "marker")
		if err != nil {
			t.Fatal(err)
		}
		return burstSetup{reader: reader, publisher: pub, filter: "burst/#", settled: func(t *testing.T) {
			if err := pub.Publish(context.Background(), "marker", []byte("after the burst")); err != nil {
				t.Fatal(err)
			}
			receiveWithin(t, marker)
		}}
	})
}

// TestBatchReceiveUnsubscribeForgetsReady: messages a batch unprotected
// but Receive has not returned yet are buffered messages, which
// Unsubscribe drops like the inner subscription's.
func TestBatchReceiveUnsubscribeForgetsReady(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	raw := b.Connect()
	defer raw.Close()
	reader := protect(t, b, newDevice(t, "reader"), nil)
	sender := sealer(t, "sender", topicKey, "t")
	_ = reader.Client().SetTopicKey(topicKey, "t")
	sub, err := reader.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		wire, err := sender.Protect(nil, fmt.Appendf(nil, "m%d", i), "t")
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Publish(ctx, "t", wire); err != nil {
			t.Fatal(err)
		}
	}
	if m := receive(t, sub); string(m.Payload) != "m0" {
		t.Fatalf("got %q", m.Payload)
	}
	if n := e4transport.BatchedMessages(reader); n != 5 {
		t.Fatalf("%d messages batched, want the 5 buffered", n)
	}
	if err := sub.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive after Unsubscribe: %v, %v", m, err)
	}
}

// TestBatchReceiveConcurrentReceivers: receivers calling Receive at the
// same time as a batch is unprotected get every message exactly once,
// and none waits on the inner subscription while a batch's messages are
// queued (the test would hang).
func TestBatchReceiveConcurrentReceivers(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	raw := b.Connect()
	defer raw.Close()
	reader := protect(t, b, newDevice(t, "reader"), nil)
	sender := sealer(t, "sender", topicKey, "t")
	_ = reader.Client().SetTopicKey(topicKey, "t")
	sub, err := reader.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	const total, receivers = 200, 4
	got := make(chan string, total)
	for range receivers {
		go func() {
			for {
				m, err := sub.Receive(ctx)
				if err != nil {
					return
				}
				got <- string(m.Payload)
			}
		}()
	}
	for i := range total {
		wire, _ := sender.Protect(nil, fmt.Appendf(nil, "m%d", i), "t")
		if err := raw.Publish(ctx, "t", wire); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[string]bool)
	for range total {
		select {
		case p := <-got:
			if seen[p] {
				t.Fatalf("%s received twice", p)
			}
			seen[p] = true
		case <-time.After(brokerTimeout):
			t.Fatalf("%d of %d messages received", len(seen), total)
		}
	}
	_ = sub.Unsubscribe(ctx)
}
