package e4transport_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestDeviceSendsSyncRequestAtStart: Protect publishes, once subscribed to
// the control topic, a sync request C2 can open, reporting the keys held.
func TestDeviceSendsSyncRequestAtStart(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	c2 := b.Connect()
	defer c2.Close()
	syncs, err := c2.Subscribe(ctx, "e4/+/sync")
	if err != nil {
		t.Fatal(err)
	}
	dev := newDevice(t, "syncing")
	if err := dev.SetTopicKey(topicKey, "room/temp"); err != nil {
		t.Fatal(err)
	}
	p := protect(t, b, dev, nil)
	m := receive(t, syncs)
	if m.Topic != e4.SyncTopic(dev.ID()) {
		t.Fatalf("sync request on %s", m.Topic)
	}
	report, err := e4.OpenSyncRequest(m.Payload, deviceKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !report.Fresh || len(report.Topics) != 1 || report.Topics[0].Tag != e4.TagOfKey(topicKey) {
		t.Fatalf("report %+v", report)
	}
	// Counted once its publish returned, which may be after it arrived.
	deadline := time.Now().Add(5 * time.Second)
	for p.SyncRequests() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("SyncRequests() = %d", p.SyncRequests())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNoSyncSendsNothing: with NoSync, no sync request is published.
func TestNoSyncSendsNothing(t *testing.T) {
	ctx := context.Background()
	b := loopback.NewBroker()
	c2 := b.Connect()
	defer c2.Close()
	syncs, err := c2.Subscribe(ctx, "e4/+/sync")
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan error, 1)
	p := protect(t, b, newDevice(t, "quiet"), &e4transport.Options{NoSync: true, OnSync: func(err error) { called <- err }})
	// Close waits for any publication in progress: after it, a marker
	// published now is the first thing syncs receives, unless a sync
	// request went out.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Publish(ctx, "e4/marker/sync", []byte("end")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, syncs); m.Topic != "e4/marker/sync" {
		t.Fatalf("with NoSync, a message on %s", m.Topic)
	}
	if p.SyncRequests() != 0 || len(called) != 0 {
		t.Fatalf("SyncRequests() = %d, OnSync called %d times", p.SyncRequests(), len(called))
	}
}

// journal records, in order, what happens to a device's transport: the
// connection events it reports and the sync requests published through it.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(entry string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, entry)
}

func (j *journal) snapshot() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// journaled passes everything to the MQTT transport it wraps and records
// the sync requests published.
type journaled struct {
	transport.Transport
	transport.ConnectionNotifier
	j *journal
}

func (t *journaled) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	err := t.Transport.Publish(ctx, topic, payload, opts...)
	if err == nil && topic == e4.SyncTopic(e4.IDFromName("restarted")) {
		t.j.add("sync published")
	}
	return err
}

// TestDeviceSendsSyncRequestAfterReconnection: after a Mosquitto restart,
// the device publishes a new sync request, after its transport reported
// the reconnection (its control topic subscribed again), and a command
// sent afterwards reaches it.
func TestDeviceSendsSyncRequestAfterReconnection(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	ctx := context.Background()
	inner := dialMosquitto(t, m)
	var j journal
	stop := inner.NotifyConnection(func(ev transport.ConnectionEvent) { j.add(ev.State.String()) })
	defer stop()
	synced := make(chan error, 8)
	applied := make(chan error, 1)
	dev := protectOver(t, &journaled{Transport: inner, ConnectionNotifier: inner, j: &j}, newDevice(t, "restarted"), &e4transport.Options{
		OnSync:    func(err error) { synced <- err },
		OnCommand: func(_ command.Code, err error) { applied <- err },
	})
	if err := <-synced; err != nil {
		t.Fatalf("first sync request: %v", err)
	}
	restartCtx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	if err := m.Restart(restartCtx); err != nil {
		t.Fatal(err)
	}
	// Each sync request published (one may come from the first
	// connection's event) is checked against the journal, until one
	// follows the loss and the recovery.
	for !syncedAfterRecovery(j.snapshot()) {
		select {
		case err := <-synced:
			if err != nil {
				t.Fatalf("sync request: %v", err)
			}
		case <-time.After(brokerTimeout):
			t.Fatalf("no sync request after the reconnection; journal %v", j.snapshot())
		}
	}
	c2 := dialMosquitto(t, m)
	sendSetTopicKey(t, c2, dev.Client(), topicKey, "after/restart")
	select {
	case err := <-applied:
		if err != nil {
			t.Fatalf("command after the restart: %v", err)
		}
	case <-time.After(brokerTimeout):
		t.Fatal("a command sent after the restart did not arrive")
	}
}

// syncedAfterRecovery reports a journal where a sync request was published
// after a loss and the recovery that followed it was reported.
func syncedAfterRecovery(entries []string) bool {
	lost := slices.Index(entries, "disconnected")
	if lost < 0 {
		return false
	}
	rest := entries[lost:]
	recovered := slices.Index(rest, "connected")
	return recovered >= 0 && slices.Contains(rest[recovered:], "sync published")
}
