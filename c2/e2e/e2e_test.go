package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

const topic = "site/line-1/telemetry"

func TestEndToEnd(t *testing.T) {
	networks := map[string]func(*testing.T) *network{
		"mqtt-mosquitto": mosquittoNetwork,
		"amqp-rabbitmq":  rabbitNetwork,
		"coap-e4broker":  coapNetwork,
	}
	for name, open := range networks {
		t.Run(name, func(t *testing.T) {
			net := open(t)
			for _, mode := range []e4.Mode{e4.SymKey, e4.PubKey} {
				t.Run(mode.String(), func(t *testing.T) { runScenario(t, net, mode) })
			}
		})
	}
}

// runScenario: C2 creates clients and a topic; devices get their keys and
// talk; the key rotates while messages flow and none is lost; a removed
// device cannot read; the broker goes down while commands are pending and
// every device still ends up with the current key.
func runScenario(t *testing.T, net *network, mode e4.Mode) {
	ctx := context.Background()
	node := startC2(t, dbPath(t), newMaster(t), mode, net.dial(t))
	svc := node.svc
	var devs []*device
	for i := range 3 {
		devs = append(devs, newDevice(t, net, svc, fmt.Sprintf("%s-%s-dev%d", net.name, mode, i)))
	}
	_, err := svc.AddTopic(ctx, topic)
	mustDo(t, err)
	for _, d := range devs {
		mustDo(t, svc.AddMember(ctx, topic, d.client().ID()))
		if mode == e4.PubKey {
			for _, other := range devs {
				if other != d {
					mustDo(t, svc.LinkClients(ctx, c2.Link{Source: other.client().ID(), Target: d.client().ID()}))
				}
			}
			mustDo(t, svc.SendC2SignerKey(ctx, d.client().ID()))
		}
	}
	for _, d := range devs {
		eventually(t, 20*time.Second, d.name+" receives its topic key", func() bool { return holdsCurrentKey(svc, d, topic) })
		var err error
		d.sub, err = d.tr.Subscribe(ctx, topic)
		mustDo(t, err)
	}

	// Messages flow from dev0 while the key rotates twice.
	const total = 60
	received := startReaders(t, devs[1:], total)
	sender := devs[0]
	for seq := 1; seq <= total; seq++ {
		payload, _ := json.Marshal(map[string]int{"seq": seq})
		mustDo(t, sender.tr.Publish(ctx, topic, payload, transport.WithQoS(transport.AtLeastOnce)))
		if seq == total/3 || seq == 2*total/3 {
			_, err := svc.RotateTopic(ctx, topic)
			mustDo(t, err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	for i, got := range received {
		eventually(t, 20*time.Second, fmt.Sprintf("reader %d gets all %d messages across two rotations", i+1, total), func() bool { return got.Load() == total })
	}
	for _, d := range devs {
		eventually(t, 20*time.Second, d.name+" follows the rotations", func() bool { return holdsCurrentKey(svc, d, topic) })
	}

	// dev2 leaves: it cannot read what dev0 sends next, dev1 can.
	removed := devs[2]
	mustDo(t, svc.RemoveMember(ctx, topic, removed.client().ID()))
	eventually(t, 20*time.Second, "the removed device drops its key", func() bool { return !removed.client().HasTopicKey(topic) })
	eventually(t, 20*time.Second, "members get the key rotated at the removal", func() bool {
		return holdsCurrentKey(svc, devs[0], topic) && holdsCurrentKey(svc, devs[1], topic)
	})
	before := removed.drops()
	msg, err := sender.client().Protect(nil, []byte(`{"seq":1000}`), topic)
	mustDo(t, err)
	if _, err := removed.client().Unprotect(nil, msg, topic); err == nil {
		t.Fatal("the removed device read a message sent after its removal")
	}
	mustDo(t, sender.tr.Publish(ctx, topic, []byte(`{"seq":1001}`), transport.WithQoS(transport.AtLeastOnce)))
	eventually(t, 20*time.Second, "the removed device reports the message it cannot read", func() bool { return removed.drops() > before })

	// The broker goes down; a rotation waits in the outbox; the broker
	// comes back and every member ends up with the new key.
	net.stop(t)
	_, err = svc.RotateTopic(ctx, topic)
	mustDo(t, err)
	time.Sleep(300 * time.Millisecond) // let the dispatcher fail a few times
	net.start(t)
	for _, d := range devs[:2] {
		eventually(t, 60*time.Second, d.name+" gets the key rotated during the outage", func() bool { return holdsCurrentKey(svc, d, topic) })
	}
	eventually(t, 30*time.Second, "the outbox drains", func() bool {
		n, err := svc.CountCommands(ctx, pendingCommands)
		return err == nil && n == 0
	})
}

// startReaders counts, per reader, distinct sequence numbers received.
func startReaders(t *testing.T, readers []*device, total int) []*atomic.Int64 {
	t.Helper()
	counts := make([]*atomic.Int64, len(readers))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i, d := range readers {
		counts[i] = new(atomic.Int64)
		seen := make(map[int]bool)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := d.sub.Receive(ctx)
				if err != nil {
					return
				}
				var v struct{ Seq int }
				if json.Unmarshal(m.Payload, &v) == nil && v.Seq >= 1 && v.Seq <= total && !seen[v.Seq] {
					seen[v.Seq] = true
					counts[i].Add(1)
				}
			}
		}()
	}
	return counts
}
