package devenv

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/store"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// telemetry is what the simulated devices publish.
type telemetry struct {
	From  string  `json:"from"`
	Seq   int     `json:"seq"`
	Value float64 `json:"value"`
}

// simDevice is one simulated device.
type simDevice struct {
	name   string
	client *e4.Client
	tr     *e4transport.Protected
	tap    *tap
	sub    transport.Subscription

	member    atomic.Bool
	published atomic.Int64
	readFail  atomic.Int64

	mu      sync.Mutex
	lastSeq map[string]int // per sender, the last sequence number read
	read    int
	lost    int

	// What reportUnreadable has not printed yet, and when it last did.
	unreadMu      sync.Mutex
	unreadPending int
	unreadShownAt time.Time
}

// unreadableEvery is how often a device that keeps failing to read (the
// removed one) says so: its first failure at once, then a count.
const unreadableEvery = 10 * time.Second

// reportUnreadable prints the first message a device cannot read, then
// at most one line per unreadableEvery with the count since, instead of a
// line per message.
func (d *simDevice) reportUnreadable(out *printer, topic string, err error) {
	d.unreadMu.Lock()
	defer d.unreadMu.Unlock()
	now := time.Now()
	switch {
	case d.unreadShownAt.IsZero():
		out.line("%-16s cannot read a message on %s: %v", d.name, topic, err)
	case now.Sub(d.unreadShownAt) >= unreadableEvery:
		out.line("%-16s cannot read %d more messages on %s: %v", d.name, d.unreadPending+1, topic, err)
	default:
		d.unreadPending++
		return
	}
	d.unreadShownAt, d.unreadPending = now, 0
}

// ensureDevice makes sure C2 knows the device and the device holds its
// key: from its state file when both exist, otherwise by (re)adding it.
func (e *env) ensureDevice(ctx context.Context, name string) (*e4.Client, error) {
	suite := e.svc.Suite()
	id := suite.IDFromName(name)
	st := store.NewFile(filepath.Join(e.opts.Dir, "devices", name+".e4state"))
	_, known := e.svc.GetClient(ctx, id)
	if known == nil {
		c, err := e4.LoadClient(&e4.Config{Store: st, Suite: suite})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("device %s: %w", name, err)
		}
		// C2 knows a key this device lost: start it over.
		if err := e.svc.RemoveClient(ctx, id); err != nil {
			return nil, err
		}
	} else if !errors.Is(known, c2.ErrNotFound) {
		return nil, known
	}
	added, err := e.svc.AddClient(ctx, c2.NewClient{Name: name})
	if err != nil {
		return nil, err
	}
	_ = os.Remove(st.Path())
	return e4.NewSymKeyClient(id, added.Key, &e4.Config{Store: st, Suite: suite})
}

// connect starts a device on the broker and subscribes it to Topic.
func (e *env) connect(ctx context.Context, name string) (*simDevice, error) {
	client, err := e.ensureDevice(ctx, name)
	if err != nil {
		return nil, err
	}
	inner, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{e.broker.URL()}, ClientID: "e4kit-dev-" + name})
	if err != nil {
		return nil, err
	}
	d := &simDevice{name: name, client: client, tap: &tap{Transport: inner}, lastSeq: make(map[string]int)}
	d.tr, err = e4transport.Protect(ctx, d.tap, client, &e4transport.Options{
		AwaitKey: e.opts.AwaitKey,
		OnDrop: func(topic string, err error) {
			d.readFail.Add(1)
			d.reportUnreadable(e.out, topic, err)
		},
	})
	if err != nil {
		inner.Close()
		return nil, err
	}
	e.closes = append(e.closes, d.tr.Close)
	if d.sub, err = d.tr.Subscribe(ctx, Topic); err != nil {
		return nil, err
	}
	return d, nil
}

// ensureMembership creates the topic and adds every device to it.
func (e *env) ensureMembership(ctx context.Context, devices []*simDevice) error {
	if _, err := e.svc.AddTopic(ctx, Topic); err != nil && !errors.Is(err, c2.ErrExists) {
		return err
	}
	for _, d := range devices {
		ok, err := e.svc.IsMember(ctx, Topic, d.client.ID())
		if err != nil {
			return err
		}
		if !ok {
			if err := e.svc.AddMember(ctx, Topic, d.client.ID()); err != nil {
				return err
			}
			e.out.line("C2        added %s to %s: SetTopicKey queued for it", d.name, Topic)
		}
		d.member.Store(true)
	}
	return waitUntil(ctx, 10*time.Second, func() bool {
		for _, d := range devices {
			if !d.client.HasTopicKey(Topic) {
				return false
			}
		}
		return true
	})
}

// publishLoop publishes telemetry every period while the device has a key.
func (d *simDevice) publishLoop(ctx context.Context, every time.Duration, out *printer) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if !d.member.Load() {
			continue
		}
		seq++
		payload, _ := json.Marshal(telemetry{From: d.name, Seq: seq, Value: 20 + float64(seq%50)/10})
		if err := d.tr.Publish(ctx, Topic, payload, transport.WithQoS(transport.AtLeastOnce)); err != nil {
			if ctx.Err() == nil {
				out.line("%-16s cannot publish: %v", d.name, err)
			}
			seq--
			continue
		}
		d.published.Add(1)
	}
}

// readLoop reads the topic; the dashboard shows each message beside the
// bytes the broker carried.
func (d *simDevice) readLoop(ctx context.Context, show bool, out *printer) {
	for {
		msg, err := d.sub.Receive(ctx)
		if err != nil {
			return
		}
		head, size, captured := d.tap.take(msg)
		var t telemetry
		if err := json.Unmarshal(msg.Payload, &t); err != nil {
			out.line("%-16s read a message that is not telemetry: %v", d.name, err)
			continue
		}
		if t.From == d.name {
			continue // its own message, echoed by the broker
		}
		d.account(t)
		if show {
			wire := "(not captured)"
			if captured {
				wire = shortHex(head, size)
			}
			out.line("broker sees %-44s | %s reads %s", wire, d.name, msg.Payload)
		}
	}
}

// account records a read and counts gaps in each sender's sequence.
func (d *simDevice) account(t telemetry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.read++
	if last, ok := d.lastSeq[t.From]; ok && t.Seq > last+1 {
		d.lost += t.Seq - last - 1
	}
	d.lastSeq[t.From] = max(d.lastSeq[t.From], t.Seq)
}

// wireHead is how much of a raw message the dashboard shows: the 8-byte
// timestamp, which changes little from one message to the next, is
// skipped, then the SIV and the start of the ciphertext.
const (
	wireSkip  = e4.TimestampLen
	wireShown = 12
	wireHead  = wireSkip + wireShown
)

// shortHex shows a protected message of size bytes from its first bytes
// (head, at most wireHead): past its timestamp, the SIV and the start of
// the ciphertext, and the size.
func shortHex(head []byte, size int) string {
	if size < wireHead || len(head) < wireHead {
		return hex.EncodeToString(head)
	}
	return fmt.Sprintf("%s… (%d B)", hex.EncodeToString(head[wireSkip:wireHead]), size)
}

// tapDepth bounds how many raw messages the tap remembers per topic: those
// the device never reads (dropped, its own echo taken late) leave once
// tapDepth newer ones arrived.
const tapDepth = 64

// tap is a transport that keeps, per topic and in arrival order, a copy of
// the start of each raw payload it receives, so that the dashboard shows
// beside each message the bytes the broker carried for that very message.
// The E4 decorator reads ahead (it unprotects up to sixteen buffered
// messages at once), so "the last payload received" belongs to a later
// message than the one being shown.
type tap struct {
	transport.Transport
	mu   sync.Mutex
	seen map[string][]wireCopy // per topic, oldest first, at most tapDepth
}

// wireCopy is what the tap keeps of one received message.
type wireCopy struct {
	// msg is the message the inner subscription returned. The E4
	// decorator returns that same message, unprotected in place over its
	// payload, which is how take finds the copy of a message read.
	msg  *transport.Message
	head []byte // a copy of the first wireHead bytes
	size int    // the whole payload's length
}

func (t *tap) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	sub, err := t.Transport.Subscribe(ctx, filter)
	if err != nil {
		return nil, err
	}
	return &tapSubscription{Subscription: sub, t: t}, nil
}

// record keeps a copy of the start of a received message: the decorator
// unprotects in place over the received buffer, so a reference to it would
// show the plaintext once the message is read.
func (t *tap) record(m *transport.Message) {
	c := wireCopy{msg: m, head: bytes.Clone(m.Payload[:min(len(m.Payload), wireHead)]), size: len(m.Payload)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = make(map[string][]wireCopy)
	}
	fifo := append(t.seen[m.Topic], c)
	if len(fifo) > tapDepth {
		fifo[0] = wireCopy{}
		fifo = fifo[1:]
	}
	t.seen[m.Topic] = fifo
}

// take returns, and forgets, the wire bytes kept for msg as the decorator
// delivered it: the first wireHead bytes and the size. ok is false when
// the tap holds nothing for it (it left the bounded history).
func (t *tap) take(msg *transport.Message) (head []byte, size int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fifo := t.seen[msg.Topic]
	for i, c := range fifo {
		if c.msg == msg {
			t.seen[msg.Topic] = append(fifo[:i], fifo[i+1:]...)
			fifo[len(fifo)-1] = wireCopy{}
			return c.head, c.size, true
		}
	}
	return nil, 0, false
}

type tapSubscription struct {
	transport.Subscription
	t *tap
}

// Receive records what the broker carried on the demo topic.
func (s *tapSubscription) Receive(ctx context.Context) (*transport.Message, error) {
	m, err := s.Subscription.Receive(ctx)
	if err == nil && m.Topic == Topic {
		s.t.record(m)
	}
	return m, err
}

func waitUntil(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("devices did not receive their keys within %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
