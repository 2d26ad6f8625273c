package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// TestGroupTopicsOverMosquitto: a PK-mode C2 with GroupTopics and two PK
// devices over Mosquitto. Joining the topic is all the operator does: each
// device reads the other's messages (without GroupTopics they are dropped
// with "signer public key not found" until an operator links them). When one leaves, the other forgets its key and
// drops its messages.
func TestGroupTopicsOverMosquitto(t *testing.T) {
	ctx := context.Background()
	net := mosquittoNetwork(t)
	node := startC2(t, dbPath(t), newMaster(t), e4.PubKey, net.dial(t), func(c *c2.Config) { c.GroupTopics = true })
	svc := node.svc
	const room = "site/group-room"
	a := newDevice(t, net, svc, "group-a")
	b := newDevice(t, net, svc, "group-b")
	_, err := svc.AddTopic(ctx, room)
	mustDo(t, err)
	for _, d := range []*device{a, b} {
		mustDo(t, svc.AddMember(ctx, room, d.client().ID()))
	}
	// AwaitAck: a command is settled only once its device applied it.
	eventually(t, 30*time.Second, "the devices apply their keys", func() bool {
		n, err := svc.CountCommands(ctx, pendingCommands)
		return err == nil && n == 0
	})
	for _, d := range []*device{a, b} {
		d.sub, err = d.tr.Subscribe(ctx, room)
		mustDo(t, err)
	}
	exchange := func(from, to *device, text string) error {
		mustDo(t, from.tr.Publish(ctx, room, []byte(text), transport.WithQoS(transport.AtLeastOnce)))
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		m, err := to.sub.Receive(rctx)
		if err != nil {
			return fmt.Errorf("%s did not read %s's message: %w (drops %d)", to.name, from.name, err, to.drops())
		}
		if string(m.Payload) != text {
			return fmt.Errorf("%s read %q", to.name, m.Payload)
		}
		return nil
	}
	// (A device drops the echo of its own messages: it holds no key of its
	// own to check them. Reading the other's message is what counts.)
	mustDo(t, exchange(a, b, "hello from a"))
	mustDo(t, exchange(b, a, "hello from b"))

	// b leaves with the key kept (no rotation), so only the removed
	// public key keeps a from reading b.
	mustDo(t, svc.RemoveMember(ctx, room, b.client().ID()))
	eventually(t, 30*time.Second, "the removal reaches the devices", func() bool {
		n, err := svc.CountCommands(ctx, pendingCommands)
		return err == nil && n == 0
	})
	msg, err := b.client().Protect(nil, []byte("from b after leaving"), room)
	if err == nil {
		_, err = a.client().Unprotect(nil, msg, room)
	}
	if err == nil {
		t.Fatal("a still accepts b's messages after b left the group topic")
	}
}
