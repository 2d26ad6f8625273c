package c2

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// stateDevice is a device written out by hand, so the tests control when it
// listens, whether it acknowledges and when it sends a sync request.
type stateDevice struct {
	t      *testing.T
	broker *loopback.Broker
	client *e4.Client
	acks   bool

	mu      sync.Mutex
	applied []command.Code
	changed chan struct{} // closed and replaced after each applied command
	conn    transport.Transport
	cancel  context.CancelFunc
	done    chan struct{}
}

// newStateDevice creates a device with key (SK mode), offline.
func newStateDevice(t *testing.T, broker *loopback.Broker, name string, key []byte, acks bool) *stateDevice {
	t.Helper()
	c, err := e4.NewSymKeyClient(e4.IDFromName(name), key, deviceConfig())
	if err != nil {
		t.Fatal(err)
	}
	return newStateDeviceOf(t, broker, c, acks)
}

// newStateDeviceOf wraps an e4 client as an offline device.
func newStateDeviceOf(t *testing.T, broker *loopback.Broker, c *e4.Client, acks bool) *stateDevice {
	d := &stateDevice{t: t, broker: broker, client: c, acks: acks, changed: make(chan struct{})}
	t.Cleanup(d.offline)
	return d
}

// online subscribes the device to its control topic and, with sync, sends
// a sync request, as a device does when it (re)connects.
func (d *stateDevice) online(sync bool) {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn := d.broker.Connect()
	sub, err := conn.Subscribe(ctx, e4.ControlTopic(d.client.ID()))
	if err != nil {
		d.t.Fatal(err)
	}
	d.conn, d.cancel, d.done = conn, cancel, make(chan struct{})
	go d.listen(ctx, sub)
	if sync {
		d.sync()
	}
}

func (d *stateDevice) sync() {
	d.t.Helper()
	req, err := d.client.SyncRequest()
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.conn.Publish(context.Background(), e4.SyncTopic(d.client.ID()), req); err != nil {
		d.t.Fatal(err)
	}
}

func (d *stateDevice) listen(ctx context.Context, sub transport.Subscription) {
	defer close(d.done)
	for {
		m, err := sub.Receive(ctx)
		if err != nil {
			return
		}
		cmd, ack, err := d.client.HandleCommandAck(m.Payload)
		if ack != nil && d.acks {
			_ = d.conn.Publish(ctx, e4.AckTopic(d.client.ID()), ack)
		}
		if err == nil {
			d.mu.Lock()
			d.applied = append(d.applied, cmd)
			close(d.changed)
			d.changed = make(chan struct{})
			d.mu.Unlock()
		}
	}
}

// offline disconnects the device: the broker drops what C2 sends it.
func (d *stateDevice) offline() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	<-d.done
	d.conn.Close()
	d.cancel = nil
}

func (d *stateDevice) commands() []command.Code {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.applied)
}

// waitFor waits until cond holds on the device, re-checking after each
// command it applies.
func (d *stateDevice) waitFor(what string, cond func() bool) {
	d.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		d.mu.Lock()
		changed := d.changed
		d.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond): // C2's side may change too
		case <-timeout:
			d.t.Fatalf("device %s: %s never happened; applied %v", d.client.ID(), what, d.commands())
		}
	}
}

// holdsCurrentKey reports whether the device decrypts what C2 protects on
// topic now.
func (d *stateDevice) holdsCurrentKey(svc *Service, topic string) bool {
	msg, err := svc.ProtectMessage(context.Background(), topic, []byte("probe"))
	if err != nil {
		d.t.Fatal(err)
	}
	_, err = d.client.Unprotect(nil, msg, topic)
	return err == nil
}

// waitState polls the service until cond holds.
func waitState(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(cmds []command.Code, kind command.Code) int {
	n := 0
	for _, c := range cmds {
		if c == kind {
			n++
		}
	}
	return n
}

func fastRepairs(cfg *Config) {
	cfg.Dispatch.RepairInterval = 20 * time.Millisecond
	cfg.Dispatch.AwaitAck = time.Hour // tests that want a repair set it
}

// onlineMember adds client "dev", online and acknowledging, as the only
// member of topic "t", and waits until it acknowledged the first key.
func onlineMember(t *testing.T, svc *Service, broker *loopback.Broker) *stateDevice {
	t.Helper()
	ctx := context.Background()
	added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "dev"}))
	dev := newStateDevice(t, broker, "dev", added.Key, true)
	dev.online(false)
	must[TopicInfo](t)(svc.AddTopic(ctx, "t"))
	if err := svc.AddMember(ctx, "t", added.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, "first key acknowledged", func() bool {
		return must[TopicState](t)(svc.TopicState(ctx, "t")).Converged
	})
	return dev
}

// TestREADMEOrderDeviceStartsLast follows the README: client, topic,
// membership and a rotation are done before the device ever starts. C2
// sends to nobody; the device's sync request at its first start brings it
// the current key, once.
func TestREADMEOrderDeviceStartsLast(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect(), fastRepairs)
	svc := env.svc
	added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "dev"}))
	must[TopicInfo](t)(svc.AddTopic(ctx, "sensors/temp"))
	if err := svc.AddMember(ctx, "sensors/temp", added.ID); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t) // sent: the broker dropped it, nobody listened
	if _, err := svc.RotateTopic(ctx, "sensors/temp"); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t)
	if st := must[ClientState](t)(svc.ClientState(ctx, added.ID)); st.TopicsBehind != 1 || !st.LastSeen.IsZero() || st.Acknowledges {
		t.Fatalf("state before the device started: %+v", st)
	}

	dev := newStateDevice(t, broker, "dev", added.Key, true)
	if dev.holdsCurrentKey(svc, "sensors/temp") {
		t.Fatal("the device holds the key before it started")
	}
	dev.online(true)
	dev.waitFor("the current key", func() bool { return dev.holdsCurrentKey(svc, "sensors/temp") })
	if got := dev.commands(); len(got) != 1 || got[0] != command.SetTopicKey {
		t.Fatalf("device applied %v, want one SetTopicKey", got)
	}
	waitState(t, "the device's acknowledgement recorded", func() bool {
		st := must[ClientState](t)(svc.ClientState(ctx, added.ID))
		return st.TopicsBehind == 0 && st.Acknowledges && !st.LastSync.IsZero()
	})
	ts := must[TopicState](t)(svc.TopicState(ctx, "sensors/temp"))
	if !ts.Converged || ts.Version != 2 || ts.Acknowledged != 1 || ts.String() != "version 2: 1 of 1 members acknowledged; 0 behind" {
		t.Fatalf("topic state %+v", ts)
	}
	if s := svc.Dispatcher().Stats().CatchUp; s.Received != 1 || s.Handled != 1 || s.Commands != 1 {
		t.Fatalf("catch-up stats %+v", s)
	}
}

// TestOfflineThroughThreeRotations: a device that slept through three
// rotations gets one SetTopicKey with the current key, not three.
func TestOfflineThroughThreeRotations(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	var mu sync.Mutex
	var converged []Event
	env := newTestService(t, e4.SymKey, broker.Connect(), fastRepairs, func(cfg *Config) {
		cfg.OnEvent = func(e Event) {
			if e.Kind == EventTopicConverged {
				mu.Lock()
				converged = append(converged, e)
				mu.Unlock()
			}
		}
	})
	svc := env.svc
	dev := onlineMember(t, svc, broker)

	dev.offline()
	for range 3 {
		if _, err := svc.RotateTopic(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		env.waitIdle(t)
	}
	behind := must[[]BehindClient](t)(svc.TopicBehind(ctx, "t", e4.ID{}, 10))
	if len(behind) != 1 || behind[0].ID != dev.client.ID() || behind[0].AckedVersion != 1 || !behind[0].Acknowledges {
		t.Fatalf("members behind: %+v", behind)
	}

	dev.online(true)
	dev.waitFor("the current key", func() bool { return dev.holdsCurrentKey(svc, "t") })
	waitState(t, "convergence reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(converged) > 0 && converged[len(converged)-1].Detail == "version 4, 1 members"
	})
	if got := count(dev.commands(), command.SetTopicKey); got != 2 {
		t.Fatalf("device applied %d SetTopicKey (%v), want 2: one before, one after its outage", got, dev.commands())
	}
}

// TestNonAcknowledgingDeviceStallsNothing: a device that never
// acknowledges, beside devices that do: every command goes out once, no
// queue waits, and its state says C2 cannot know what it holds.
func TestNonAcknowledgingDeviceStallsNothing(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect(), fastRepairs, func(cfg *Config) {
		cfg.Dispatch.AwaitAck = 100 * time.Millisecond // repairs run, for the acknowledging ones
	})
	svc := env.svc
	var devs []*stateDevice
	for i, name := range []string{"silent", "a", "b"} {
		added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: name}))
		d := newStateDevice(t, broker, name, added.Key, i > 0)
		d.online(false)
		devs = append(devs, d)
	}
	for _, topic := range []string{"t1", "t2"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
		for _, d := range devs {
			if err := svc.AddMember(ctx, topic, d.client.ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range devs {
		d.waitFor("both keys", func() bool { return d.holdsCurrentKey(svc, "t1") && d.holdsCurrentKey(svc, "t2") })
	}
	for range 2 {
		if _, err := svc.RotateTopic(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			d.waitFor("the rotated key", func() bool { return d.holdsCurrentKey(svc, "t1") })
		}
	}
	env.waitIdle(t)
	waitState(t, "acknowledging devices current", func() bool {
		return must[TopicState](t)(svc.TopicState(ctx, "t1")).Acknowledged == 2
	})
	ts := must[TopicState](t)(svc.TopicState(ctx, "t1"))
	if ts.Members != 3 || ts.Behind != 1 || ts.BehindNotAcknowledging != 1 {
		t.Fatalf("topic state %+v", ts)
	}
	silent := devs[0].client.ID()
	st := must[ClientState](t)(svc.ClientState(ctx, silent))
	if st.Acknowledges || st.Stalled || st.PendingCommands != 0 || st.TopicsBehind != 2 {
		t.Fatalf("silent device state %+v", st)
	}
	// Every command went out once: nothing waited for an acknowledgement
	// that never comes, nothing was sent again.
	if got := devs[0].commands(); len(got) != 4 {
		t.Fatalf("silent device applied %v, want 4 commands", got)
	}
	if err := svc.SetAcknowledges(ctx, silent, AckNo); err != nil {
		t.Fatal(err)
	}
	f := must[FleetState](t)(svc.FleetState(ctx))
	if f.Clients != 3 || f.Acknowledging != 2 || f.NotAcknowledging != 1 || f.PendingCommands != 0 || f.ClientsBehind != 1 {
		t.Fatalf("fleet state %+v", f)
	}
	if s := svc.Dispatcher().Stats(); s.Repaired != 0 || s.Acked != 8 {
		t.Fatalf("stats %+v: want no repair and 8 acknowledgements", s)
	}
	if err := svc.SetAcknowledges(ctx, silent, "maybe"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetAcknowledges(maybe): %v", err)
	}
}

// TestRepairAfterAwaitAck: an acknowledging device that missed rotations
// and sends no sync request gets one SetTopicKey with the current key
// once AwaitAck passed.
func TestRepairAfterAwaitAck(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect(), fastRepairs, func(cfg *Config) {
		cfg.Dispatch.AwaitAck = 200 * time.Millisecond
		// Not heard from since the rotations were sent: it waits for this.
		cfg.Dispatch.RepairIdle = 500 * time.Millisecond
	})
	svc := env.svc
	dev := onlineMember(t, svc, broker)
	dev.offline()
	for range 2 {
		if _, err := svc.RotateTopic(ctx, "t"); err != nil {
			t.Fatal(err)
		}
	}
	env.waitIdle(t)
	dev.online(false) // back, without a sync request
	dev.waitFor("the current key", func() bool { return dev.holdsCurrentKey(svc, "t") })
	waitState(t, "convergence", func() bool { return must[TopicState](t)(svc.TopicState(ctx, "t")).Converged })
	if got := count(dev.commands(), command.SetTopicKey); got != 2 {
		t.Fatalf("device applied %v, want 2 SetTopicKey", dev.commands())
	}
	if s := svc.Dispatcher().Stats(); s.Repaired == 0 {
		t.Fatalf("stats %+v: no repair counted", s)
	}
}

// TestClientKeyChangeWhileOffline: the SetIDKey of a client-key change is
// lost while the device is offline. C2 keeps reaching it under the key it
// holds; its sync request under the old key gets the SetIDKey again, and
// it ends on the new key.
func TestClientKeyChangeWhileOffline(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect(), fastRepairs)
	svc := env.svc
	dev := onlineMember(t, svc, broker)
	id := dev.client.ID()

	dev.offline()
	if _, err := svc.NewClientKey(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t)
	if st := must[ClientState](t)(svc.ClientState(ctx, id)); st.KeyInUse != KeyUnconfirmed {
		t.Fatalf("key in use %q during the change", st.KeyInUse)
	}
	if _, err := svc.NewClientKey(ctx, id, nil); !errors.Is(err, ErrKeyChangePending) {
		t.Fatalf("a second change before the first is confirmed: %v", err)
	}

	dev.online(true) // its sync request is under the old key
	dev.waitFor("the SetIDKey and the current key", func() bool {
		return count(dev.commands(), command.SetIDKey) == 1 && dev.holdsCurrentKey(svc, "t")
	})
	waitState(t, "the new key confirmed", func() bool {
		return must[ClientState](t)(svc.ClientState(ctx, id)).KeyInUse == KeyCurrent
	})
	// Commands now go out under the new key only, and the device applies
	// them: it holds the new key.
	if _, err := svc.RotateTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	dev.waitFor("the key of the next rotation", func() bool { return dev.holdsCurrentKey(svc, "t") })
}

// TestCommandTimestampsGrowPerClient: a burst of commands to one client
// carries strictly increasing timestamps, so the device applies each.
func TestCommandTimestampsGrowPerClient(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	spy := subscribe(t, broker.Connect(), e4.ControlTopic(e4.IDFromName("dev")))
	env := newTestService(t, e4.SymKey, broker.Connect())
	added := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	const n = 5
	for i := range n {
		topic := string(rune('a' + i))
		must[TopicInfo](t)(env.svc.AddTopic(ctx, topic))
		if err := env.svc.AddMember(ctx, topic, added.ID); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for range n {
		m := receive(t, spy)
		ts := uint64(m.Payload[0]) | uint64(m.Payload[1])<<8 | uint64(m.Payload[2])<<16 | uint64(m.Payload[3])<<24
		if ts <= last {
			t.Fatalf("timestamp %d after %d", ts, last)
		}
		last = ts
	}
}

// TestPermanentFailureStallsAndMovesOn: a refusal the transport marks
// permanent fails the command at once, reports the client stalled and
// lets its next command go; that command's success clears the stall.
func TestPermanentFailureStallsAndMovesOn(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	flaky := &flakyTransport{Transport: broker.Connect(), failures: 1, err: transport.Permanent(errors.New("not authorized"))}
	var mu sync.Mutex
	var stalled []Event
	env := newTestService(t, e4.SymKey, flaky, func(cfg *Config) {
		cfg.OnEvent = func(e Event) {
			if e.Kind == EventClientStalled {
				mu.Lock()
				stalled = append(stalled, e)
				mu.Unlock()
			}
		}
	})
	svc := env.svc
	added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "dev"}))
	must[TopicInfo](t)(svc.AddTopic(ctx, "t"))
	if err := svc.AddMember(ctx, "t", added.ID); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t)
	waitState(t, "the client reported stalled", func() bool { return must[ClientState](t)(svc.ClientState(ctx, added.ID)).Stalled })
	if st := must[ClientState](t)(svc.ClientState(ctx, added.ID)); st.StalledReason != "a permanent failure: not authorized" {
		t.Fatalf("state after a permanent failure: %+v", st)
	}
	failed := must[[]CommandStatus](t)(svc.Commands(ctx, CommandFilter{State: CommandFailed}, 0, 10))
	if len(failed) != 1 || failed[0].Attempts != 0 {
		t.Fatalf("failed commands %+v: want one, never retried", failed)
	}
	must[TopicInfo](t)(svc.AddTopic(ctx, "u"))
	if err := svc.AddMember(ctx, "u", added.ID); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t)
	waitState(t, "the stall cleared", func() bool { return !must[ClientState](t)(svc.ClientState(ctx, added.ID)).Stalled })
	mu.Lock()
	defer mu.Unlock()
	if len(stalled) != 1 || *stalled[0].Client != added.ID {
		t.Fatalf("stall events %+v", stalled)
	}
}

// TestCatchUpQueueIsBounded: sync requests beyond the queue are dropped
// and counted, not buffered without limit.
func TestCatchUpQueueIsBounded(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect(), func(cfg *Config) {
		cfg.Dispatch.CatchUp = CatchUpConfig{SyncRate: 0.001, SyncBurst: 1, SyncQueue: 1}
	})
	added := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	dev := newStateDevice(t, broker, "dev", added.Key, true)
	dev.online(false)
	const n = 10
	for range n {
		dev.sync()
	}
	waitState(t, "every request received", func() bool { return env.svc.Dispatcher().Stats().CatchUp.Received == n })
	// One handled at once (the burst), one waiting for a token, one in
	// the queue: the rest dropped.
	s := env.svc.Dispatcher().Stats().CatchUp
	if s.Dropped < n-3 || s.Handled > 1 {
		t.Fatalf("catch-up stats %+v", s)
	}
}

// TestResendOnScheduleAndBehindEvent: a device that does not acknowledge
// and missed a rotation gets the current key again on the ResendEvery
// schedule, and the topic is reported behind after BehindAfter.
func TestResendOnScheduleAndBehindEvent(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	var mu sync.Mutex
	var behind []Event
	env := newTestService(t, e4.SymKey, broker.Connect(), fastRepairs, func(cfg *Config) {
		cfg.Dispatch.ResendEvery = 200 * time.Millisecond
		cfg.Dispatch.BehindAfter = time.Millisecond
		cfg.OnEvent = func(e Event) {
			if e.Kind == EventDevicesBehind {
				mu.Lock()
				behind = append(behind, e)
				mu.Unlock()
			}
		}
	})
	svc := env.svc
	added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "v1"}))
	if err := svc.SetAcknowledges(ctx, added.ID, AckNo); err != nil {
		t.Fatal(err)
	}
	must[TopicInfo](t)(svc.AddTopic(ctx, "t"))
	if err := svc.AddMember(ctx, "t", added.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t) // both sent to nobody
	dev := newStateDevice(t, broker, "v1", added.Key, false)
	dev.online(false) // an E4 v1 device: no sync request, no acknowledgement
	dev.waitFor("the current key", func() bool { return dev.holdsCurrentKey(svc, "t") })
	if s := svc.Dispatcher().Stats(); s.Resent == 0 || s.Repaired != 0 {
		t.Fatalf("stats %+v: want resends, no repair", s)
	}
	waitState(t, "the topic reported behind", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(behind) == 1 && behind[0].Detail == "version 2: 0 of 1 members acknowledged; 1 behind, of which 1 do not acknowledge"
	})
}

// TestPKModeCatchUp: in public-key mode a device that starts after its
// link and membership were made asks and gets the topic key and the public
// key of the client linked to it.
func TestPKModeCatchUp(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.PubKey, broker.Connect(), fastRepairs)
	svc := env.svc
	c2Pub := must[[]byte](t)(svc.C2PublicKey())
	pubA, _ := newEd25519(t)
	pubB, privB := newEd25519(t)
	a := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "a", PublicKey: pubA}))
	b := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "b", PublicKey: pubB}))
	must[TopicInfo](t)(svc.AddTopic(ctx, "pk/t"))
	if err := svc.AddMember(ctx, "pk/t", b.ID); err != nil {
		t.Fatal(err)
	}
	if err := svc.LinkClients(ctx, Link{Source: a.ID, Target: b.ID}); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t) // sent to nobody

	client := must[*e4.Client](t)(e4.NewPubKeyClient(b.ID, privB, c2Pub, deviceConfig()))
	dev := newStateDeviceOf(t, broker, client, true)
	dev.online(true)
	dev.waitFor("the topic key and a's public key", func() bool {
		cmds := dev.commands()
		return count(cmds, command.SetTopicKey) == 1 && count(cmds, command.SetPubKey) == 1
	})
	waitState(t, "the topic acknowledged", func() bool { return must[TopicState](t)(svc.TopicState(ctx, "pk/t")).Converged })
	waitState(t, "the public key acknowledged", func() bool {
		st := must[ClientState](t)(svc.ClientState(ctx, b.ID))
		return st.PubKeys == 1 && st.PubKeysBehind == 0 && st.C2KeyCurrent
	})
	// A second request finds nothing missing.
	dev.sync()
	waitState(t, "the second request handled", func() bool { return svc.Dispatcher().Stats().CatchUp.Handled == 2 })
	if s := svc.Dispatcher().Stats().CatchUp; s.Commands != 2 {
		t.Fatalf("catch-up queued %d commands in all, want 2", s.Commands)
	}
}

// TestPKC2KeyRotationWhileOffline: C2's key pair rotates while a PK device
// is offline, so it misses the SetC2Key. Its sync request, under the
// command key of C2's previous pair, is still heard; it gets the SetC2Key
// again and the key it missed, and ends on C2's new key.
func TestPKC2KeyRotationWhileOffline(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.PubKey, broker.Connect(), fastRepairs)
	svc := env.svc
	c2Pub := must[[]byte](t)(svc.C2PublicKey())
	pub, priv := newEd25519(t)
	added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "pk", PublicKey: pub}))
	client, err := e4.NewPubKeyClient(added.ID, priv, c2Pub, deviceConfig())
	if err != nil {
		t.Fatal(err)
	}
	dev := newStateDeviceOf(t, broker, client, true)
	dev.online(false)
	// So that the device can check what C2 protects (holdsCurrentKey).
	if err := svc.SendC2SignerKey(ctx, added.ID); err != nil {
		t.Fatal(err)
	}
	must[TopicInfo](t)(svc.AddTopic(ctx, "pk/t"))
	if err := svc.AddMember(ctx, "pk/t", added.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, "the first key acknowledged", func() bool { return must[TopicState](t)(svc.TopicState(ctx, "pk/t")).Converged })

	dev.offline()
	if _, err := svc.RotateC2Key(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RotateTopic(ctx, "pk/t"); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t)
	if st := must[ClientState](t)(svc.ClientState(ctx, added.ID)); st.KeyInUse != KeyUnconfirmed || st.C2KeyCurrent {
		t.Fatalf("state while the device missed the SetC2Key: %+v", st)
	}

	dev.online(true)
	dev.waitFor("the SetC2Key and the current topic key", func() bool {
		return count(dev.commands(), command.SetC2Key) == 1 && dev.holdsCurrentKey(svc, "pk/t")
	})
	waitState(t, "C2's new key confirmed", func() bool {
		st := must[ClientState](t)(svc.ClientState(ctx, added.ID))
		return st.C2KeyCurrent && st.KeyInUse == KeyCurrent
	})
	// From now on only the new command key is used, and it works.
	if _, err := svc.RotateTopic(ctx, "pk/t"); err != nil {
		t.Fatal(err)
	}
	dev.waitFor("the next rotation", func() bool { return dev.holdsCurrentKey(svc, "pk/t") })
}

// losingTransport holds the next publish on a topic once armed, then
// loses it: a command on its way while its device reconnects.
type losingTransport struct {
	transport.Transport
	topic   string
	armed   chan struct{} // closed by arm
	held    chan struct{} // closed once a publish is held
	release chan struct{} // closed to lose the held publish
	once    sync.Once
}

func newLosingTransport(tr transport.Transport, topic string) *losingTransport {
	return &losingTransport{Transport: tr, topic: topic, armed: make(chan struct{}),
		held: make(chan struct{}), release: make(chan struct{})}
}

func (l *losingTransport) arm() { close(l.armed) }

func (l *losingTransport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	select {
	case <-l.armed:
	default:
		return l.Transport.Publish(ctx, topic, payload, opts...)
	}
	lose := false
	if topic == l.topic {
		l.once.Do(func() { lose = true })
	}
	if !lose {
		return l.Transport.Publish(ctx, topic, payload, opts...)
	}
	close(l.held)
	select {
	case <-l.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSyncWhileCommandOnItsWay: the device reconnects while the dispatcher
// publishes its new key, which is lost, and its sync request is answered
// while that command is still on its way: nothing is queued twice, and the
// repair sends the key again after AwaitAck, not RepairIdle, because the
// device was heard from after the command left.
func TestSyncWhileCommandOnItsWay(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	id := e4.IDFromName("dev")
	tr := newLosingTransport(broker.Connect(), e4.ControlTopic(id))
	env := newTestService(t, e4.SymKey, tr, fastRepairs, func(cfg *Config) {
		cfg.Dispatch.AwaitAck = 300 * time.Millisecond
		cfg.Dispatch.RepairIdle = time.Hour
	})
	svc := env.svc
	dev := onlineMember(t, svc, broker)

	tr.arm()
	if _, err := svc.RotateTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	<-tr.held
	dev.offline()
	dev.online(true)
	waitState(t, "the sync request answered", func() bool { return svc.Dispatcher().Stats().CatchUp.Handled == 1 })
	close(tr.release)
	dev.waitFor("the current key", func() bool { return dev.holdsCurrentKey(svc, "t") })
	s := svc.Dispatcher().Stats()
	if s.CatchUp.Commands != 0 || s.Repaired == 0 {
		t.Fatalf("stats %+v: want the key sent again by the repair, not by the sync request", s)
	}
}
