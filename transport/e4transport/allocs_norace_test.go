//go:build !race

package e4transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// This file builds without -race only: the decorator's buffers come from a
// sync.Pool, which the race detector makes drop a share of what is put
// back, so allocation counts under -race measure the detector. `make test`
// runs it in its unit-norace step.

const allocTopic = "alloc/topic"

// TestProtectedAllocations checks the README's claim that the E4 decorator
// allocates nothing per message on either side: Publish protects into a
// pooled buffer, and Receive unprotects over the received payload, one
// message at a time and in batches of buffered messages.
func TestProtectedAllocations(t *testing.T) {
	const runs, size = 100, 1024
	for _, batched := range []bool{false, true} {
		key := bytes.Repeat([]byte{3}, e4.KeyLen)
		client, err := e4.NewSymKeyClient(e4.IDFromName("alloc"), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.SetTopicKey(key, allocTopic); err != nil {
			t.Fatal(err)
		}
		// One warm-up run besides the counted ones.
		data := &queuedSubscription{buffered: batched}
		payload := make([]byte, size)
		for i := range runs + 1 {
			binary.LittleEndian.PutUint64(payload, uint64(i))
			wire, err := e4.ProtectSymKey(nil, payload, key, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			data.msgs = append(data.msgs, &transport.Message{Topic: allocTopic, Payload: wire})
		}
		inner := &discardTransport{data: data, idle: make(chan struct{})}
		ctx := context.Background()
		p, err := e4transport.Protect(ctx, inner, client, &e4transport.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := p.Subscribe(ctx, allocTopic)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(runs, func() {
			if err := p.Publish(ctx, allocTopic, payload); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Publish of %d B: %v allocations, want 0", size, n)
		}
		if n := testing.AllocsPerRun(runs, func() {
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Receive of %d B (batched %v): %v allocations, want 0", size, batched, n)
		}
		if got := e4transport.BatchedMessages(p); batched != (got > 0) {
			t.Errorf("batched %v, but %d messages were unprotected in batches", batched, got)
		}
		p.Close()
	}
}

// discardTransport drops what is published and delivers data's messages
// to the subscription of allocTopic; other subscriptions (the control
// topic) stay silent.
type discardTransport struct {
	data *queuedSubscription
	idle chan struct{}
}

func (d *discardTransport) Publish(context.Context, string, []byte, ...transport.PublishOption) error {
	return nil
}

func (d *discardTransport) Subscribe(_ context.Context, filter string) (transport.Subscription, error) {
	if filter == allocTopic {
		return d.data, nil
	}
	return idleSubscription{d.idle}, nil
}

func (d *discardTransport) Close() error { return nil }

// queuedSubscription returns its messages in order. With buffered set, a
// Receive under an ended context still returns the next one, as an
// adapter does with messages it already buffers, so the decorator reads
// them in batches.
type queuedSubscription struct {
	msgs     []*transport.Message
	next     int
	buffered bool
}

func (q *queuedSubscription) Receive(ctx context.Context) (*transport.Message, error) {
	if (ctx.Err() != nil && !q.buffered) || q.next == len(q.msgs) {
		if ctx.Err() == nil {
			return nil, transport.ErrClosed
		}
		return nil, ctx.Err()
	}
	q.next++
	return q.msgs[q.next-1], nil
}

func (q *queuedSubscription) Unsubscribe(context.Context) error { return nil }

// idleSubscription delivers nothing until its context ends.
type idleSubscription struct{ done chan struct{} }

func (s idleSubscription) Receive(ctx context.Context) (*transport.Message, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, transport.ErrClosed
	}
}

func (s idleSubscription) Unsubscribe(context.Context) error { return nil }
