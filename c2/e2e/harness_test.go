package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
	"github.com/e4-iot/e4kit/transport/coap"
	coapbroker "github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// network is a real broker the test can connect to and restart.
type network struct {
	name string
	dial func(t *testing.T) transport.Transport
	// stop and start take the broker down and up again.
	stop, start func(t *testing.T)
}

func mosquittoNetwork(t *testing.T) *network {
	m := testbroker.StartMosquitto(t, nil)
	return &network{
		name: "mqtt",
		dial: func(t *testing.T) transport.Transport {
			t.Helper()
			tr, err := mqtt.Dial(context.Background(), mqtt.Config{Brokers: []string{m.URL()}, MaxReconnectInterval: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		},
		stop:  func(*testing.T) { m.Stop() },
		start: func(t *testing.T) { mustDo(t, m.Start(context.Background())) },
	}
}

func rabbitNetwork(t *testing.T) *network {
	r := testbroker.StartRabbitMQ(t, nil)
	return &network{
		name: "amqp",
		dial: func(t *testing.T) transport.Transport {
			t.Helper()
			tr, err := amqp.Dial(context.Background(), amqp.Config{URL: r.AMQPURL(), MaxBackoff: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		},
		stop:  func(*testing.T) { r.StopNode() },
		start: func(t *testing.T) { mustDo(t, r.StartNode(context.Background())) },
	}
}

func coapNetwork(t *testing.T) *network {
	addr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "udp"))
	var mu sync.Mutex
	var b *coapbroker.Broker
	start := func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		var err error
		b, err = coapbroker.Start(addr, nil)
		mustDo(t, err)
	}
	stop := func(*testing.T) {
		mu.Lock()
		defer mu.Unlock()
		if b != nil {
			b.Close()
			b = nil
		}
	}
	start(t)
	t.Cleanup(func() { stop(t) })
	return &network{
		name: "coap",
		dial: func(t *testing.T) transport.Transport {
			t.Helper()
			tr, err := coap.Dial(context.Background(), coap.Config{Addr: addr, KeepAlive: 500 * time.Millisecond, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		},
		stop: stop, start: start,
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// c2Node is a C2 service on a SQLite file, with its dispatcher running.
type c2Node struct {
	svc    *c2.Service
	cancel context.CancelFunc
	done   chan error
	close  func() error
}

func startC2(t *testing.T, dbPath string, master []byte, mode e4.Mode, tr transport.Transport, edit ...func(*c2.Config)) *c2Node {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dbPath)
	mustDo(t, err)
	keys, err := seal.NewKeyring(master)
	mustDo(t, err)
	cfg := c2.Config{
		Mode: mode, Store: st, Keyring: keys, Transport: tr,
		Dispatch: c2.DispatchConfig{
			// A CoAP device does not notice our broker's restart (UDP keeps
			// no connection), so it sends no sync request: what it lost in
			// the outage comes back by repair, which for a device silent
			// since its last command waits RepairIdle (1 h by default).
			AwaitAck: 2 * time.Second, RepairIdle: 2 * time.Second, PollInterval: 50 * time.Millisecond,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			PublishTimeout: 3 * time.Second, Lease: 3 * time.Second,
		},
	}
	for _, e := range edit {
		e(&cfg)
	}
	svc, err := c2.New(ctx, cfg)
	mustDo(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	n := &c2Node{svc: svc, cancel: cancel, done: make(chan error, 1), close: st.Close}
	go func() { n.done <- svc.Run(runCtx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *c2Node) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.close()
	n.cancel = nil
}

// device is an E4 device on its own connection.
type device struct {
	name string
	tr   *e4transport.Protected
	sub  transport.Subscription

	mu      sync.Mutex
	dropped []error
}

func (d *device) client() *e4.Client { return d.tr.Client() }

// newDevice registers a device with C2 and connects it.
func newDevice(t *testing.T, net *network, svc *c2.Service, name string) *device {
	t.Helper()
	ctx := context.Background()
	var client *e4.Client
	var err error
	if svc.Mode() == e4.SymKey {
		added, err := svc.AddClient(ctx, c2.NewClient{Name: name})
		mustDo(t, err)
		client, err = e4.NewSymKeyClient(e4.IDFromName(name), added.Key, nil)
		mustDo(t, err)
	} else {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		_, err = svc.AddClient(ctx, c2.NewClient{Name: name, PublicKey: pub})
		mustDo(t, err)
		c2Pub, err := svc.C2PublicKey()
		mustDo(t, err)
		client, err = e4.NewPubKeyClient(e4.IDFromName(name), priv, c2Pub, nil)
		mustDo(t, err)
	}
	return connectDevice(t, net, name, client)
}

// connectDevice connects an E4 client already known to C2 as a device.
func connectDevice(t *testing.T, net *network, name string, client *e4.Client) *device {
	t.Helper()
	d := &device{name: name}
	var err error
	d.tr, err = e4transport.Protect(context.Background(), net.dial(t), client, &e4transport.Options{
		AwaitKey: 3 * time.Second,
		OnDrop: func(_ string, err error) {
			d.mu.Lock()
			d.dropped = append(d.dropped, err)
			d.mu.Unlock()
		},
	})
	mustDo(t, err)
	t.Cleanup(func() { d.tr.Close() })
	return d
}

func (d *device) drops() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dropped)
}

// eventually polls ok until it holds or the limit passes.
func eventually(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdsCurrentKey reports whether d can read what C2 protects now for
// topic, which proves it holds the topic's current key.
func holdsCurrentKey(svc *c2.Service, d *device, topic string) bool {
	// Unique probes: the device's replay cache refuses a repeated one.
	probe := fmt.Sprintf("probe %d", probes.Add(1))
	msg, err := svc.ProtectMessage(context.Background(), topic, []byte(probe))
	if err != nil {
		return false
	}
	_, err = d.client().Unprotect(nil, msg, topic)
	return err == nil
}

func newMaster(t *testing.T) []byte {
	key, err := seal.GenerateKey()
	mustDo(t, err)
	return key
}

func dbPath(t *testing.T) string { return filepath.Join(t.TempDir(), "c2.db") }

// pendingCommands selects the commands still waiting in the outbox.
var pendingCommands = c2.CommandFilter{State: c2.CommandPending}

var probes atomic.Int64
