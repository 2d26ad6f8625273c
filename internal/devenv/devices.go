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
			raw := d.tap.last()
			out.line("broker sees %-44s | %s reads %s", shortHex(raw), d.name, msg.Payload)
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

// shortHex shows a protected message past its 8-byte timestamp, which
// changes little from one message to the next: the SIV and the start of
// the ciphertext.
func shortHex(b []byte) string {
	const skip, shown = e4.TimestampLen, 12
	if len(b) < skip+shown {
		return hex.EncodeToString(b)
	}
	return fmt.Sprintf("%s… (%d B)", hex.EncodeToString(b[skip:skip+shown]), len(b))
}

// tap is a transport that remembers the last raw payload it received, so
// the demo can show the ciphertext beside the plaintext.
type tap struct {
	transport.Transport
	raw atomic.Pointer[[]byte]
}

func (t *tap) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	sub, err := t.Transport.Subscribe(ctx, filter)
	if err != nil {
		return nil, err
	}
	return &tapSubscription{Subscription: sub, t: t}, nil
}

func (t *tap) last() []byte {
	if p := t.raw.Load(); p != nil {
		return *p
	}
	return nil
}

type tapSubscription struct {
	transport.Subscription
	t *tap
}

// Receive keeps a copy of what the broker carried: the E4 decorator
// unprotects in place over the received buffer, so a reference to it would
// show the plaintext once the message is read.
func (s *tapSubscription) Receive(ctx context.Context) (*transport.Message, error) {
	m, err := s.Subscription.Receive(ctx)
	if err == nil && m.Topic == Topic {
		wire := bytes.Clone(m.Payload)
		s.t.raw.Store(&wire)
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
