package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	coapbroker "github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/dial"
)

// Environment of the C2 child process of the crash test.
const (
	envChild  = "E4KIT_E2E_C2_CHILD"
	envDB     = "E4KIT_E2E_DB"
	envMaster = "E4KIT_E2E_MASTER"
	envBroker = "E4KIT_E2E_BROKER"
	envMode   = "E4KIT_E2E_MODE"
	// envFleet set to 1 runs the child at full speed for the fleet tests
	// instead of stretching each publish for the crash test.
	envFleet = "E4KIT_E2E_FLEET"
	// envStats names a file the child keeps its dispatcher's counters in.
	envStats = "E4KIT_E2E_STATS"
	// envDebugLog names a file the child writes debug logs to.
	envDebugLog = "E4KIT_E2E_DEBUG_LOG"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		if err := runC2Child(); err != nil {
			fmt.Fprintln(os.Stderr, "c2 child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runC2Child is a C2 dispatcher in its own process, so the test can kill
// it with SIGKILL in the middle of a rotation.
func runC2Child() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	master, err := hex.DecodeString(os.Getenv(envMaster))
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, os.Getenv(envDB))
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		return err
	}
	tr, err := dial.Open(ctx, os.Getenv(envBroker), dial.Options{})
	if err != nil {
		return err
	}
	defer tr.Close()
	mode := e4.SymKey
	if os.Getenv(envMode) == "pk" {
		mode = e4.PubKey
	}
	cfg := c2.Config{
		Mode: mode, Store: st, Keyring: keys, Transport: &slowTransport{Transport: tr, delay: 5 * time.Millisecond},
		Dispatch: c2.DispatchConfig{InFlight: 4, Lease: time.Second, AwaitAck: 3 * time.Second, PollInterval: 20 * time.Millisecond},
	}
	// Warnings go to stderr, which the test shows when it fails.
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if path := os.Getenv(envDebugLog); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.Logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if os.Getenv(envFleet) == "1" {
		cfg.Transport = tr
		// AwaitAck and the catch-up limits keep their defaults: the fleet
		// tests measure C2 as it is shipped.
		cfg.Dispatch = c2.DispatchConfig{Lease: 3 * time.Second, PollInterval: 20 * time.Millisecond}
	}
	svc, err := c2.New(ctx, cfg)
	if err != nil {
		return err
	}
	if path := os.Getenv(envStats); path != "" {
		go writeStats(ctx, svc, path)
	}
	err = svc.Run(ctx)
	// The counters, for the test to show when it fails.
	stats, _ := json.Marshal(svc.Dispatcher().Stats())
	fmt.Fprintf(os.Stderr, "dispatcher stats: %s\n", stats)
	return err
}

// writeStats writes the dispatcher's counters to path every 200 ms, for
// the fleet tests to read how the catch-up went.
func writeStats(ctx context.Context, svc *c2.Service, path string) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stats, _ := json.Marshal(svc.Dispatcher().Stats())
		tmp := path + ".tmp"
		if os.WriteFile(tmp, stats, 0o600) == nil {
			os.Rename(tmp, path)
		}
	}
}

// slowTransport stretches each publish so a rotation lasts long enough to
// be interrupted.
type slowTransport struct {
	transport.Transport
	delay time.Duration
}

func (s *slowTransport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	time.Sleep(s.delay)
	return s.Transport.Publish(ctx, topic, payload, opts...)
}

// fleet is many simulated devices sharing one connection: it applies each
// command to the right client and acknowledges it.
type fleet struct {
	tr      transport.Transport
	mu      sync.Mutex
	clients map[string]*e4.Client // by control topic
}

func newFleet(t *testing.T, brokerURL string) *fleet {
	t.Helper()
	tr, err := dial.Open(context.Background(), brokerURL, dial.Options{})
	mustDo(t, err)
	t.Cleanup(func() { tr.Close() })
	f := &fleet{tr: tr, clients: make(map[string]*e4.Client)}
	sub, err := tr.Subscribe(context.Background(), e4.ControlTopicPrefix+"+")
	mustDo(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go f.serve(ctx, t, sub, done)
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fleet) add(c *e4.Client) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients[c.ControlTopic()] = c
}

func (f *fleet) serve(ctx context.Context, t *testing.T, sub transport.Subscription, done chan struct{}) {
	defer close(done)
	for {
		m, err := sub.Receive(ctx)
		if err != nil {
			return
		}
		f.mu.Lock()
		c := f.clients[m.Topic]
		f.mu.Unlock()
		if c == nil {
			continue
		}
		_, ack, err := c.HandleCommandAck(m.Payload)
		if err != nil && ack == nil {
			t.Errorf("device %s refused a command: %v", c.ID(), err)
			continue
		}
		_ = f.tr.Publish(ctx, e4.AckTopic(c.ID()), ack, transport.WithQoS(transport.AtLeastOnce))
	}
}

func TestC2KilledMidRotation(t *testing.T) {
	brokers := map[string]func(*testing.T) string{
		"mqtt-mosquitto": func(t *testing.T) string { return testbroker.StartMosquitto(t, nil).URL() },
		"amqp-rabbitmq":  func(t *testing.T) string { return testbroker.StartRabbitMQ(t, nil).AMQPURL() },
		"coap-e4broker": func(t *testing.T) string {
			addr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "udp"))
			b, err := coapbroker.Start(addr, nil)
			mustDo(t, err)
			t.Cleanup(func() { b.Close() })
			return "coap://" + addr
		},
	}
	for name, start := range brokers {
		t.Run(name, func(t *testing.T) {
			url := start(t)
			for _, mode := range []e4.Mode{e4.SymKey, e4.PubKey} {
				t.Run(mode.String(), func(t *testing.T) { killMidRotation(t, url, mode) })
			}
		})
	}
}

// killMidRotation: a C2 process is killed with SIGKILL while it sends a
// rotation to 500 devices, another starts, and every device ends up with
// the current key and nothing stays pending.
func killMidRotation(t *testing.T, brokerURL string, mode e4.Mode) {
	const devices = 500
	ctx := context.Background()
	path, master := dbPath(t), newMaster(t)

	// The parent edits state (no transport); children dispatch.
	st, err := sqlite.Open(ctx, path)
	mustDo(t, err)
	defer st.Close()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c2.New(ctx, c2.Config{Mode: mode, Store: st, Keyring: keys})
	mustDo(t, err)
	f := newFleet(t, brokerURL)
	ids := make([]e4.ID, devices)
	for i := range devices {
		name := fmt.Sprintf("crash-%s-%s-%03d", brokerURL, mode, i)
		ids[i] = e4.IDFromName(name)
		f.add(registerDevice(t, svc, name))
	}
	_, err = svc.AddTopic(ctx, topic)
	mustDo(t, err)
	mustDo(t, svc.AddMembers(ctx, topic, ids))

	child := startChild(t, path, master, brokerURL, mode)
	waitOutbox(t, st, 0, 60*time.Second) // every device got the first key

	before := countState(t, st, store.CommandSent)
	_, err = svc.RotateTopic(ctx, topic)
	mustDo(t, err)
	eventually(t, 30*time.Second, "the child sends a quarter of the rotation", func() bool {
		return countState(t, st, store.CommandSent) >= before+devices/4
	})
	child.Process.Kill()
	child.Wait()
	pending := countState(t, st, store.CommandPending)
	if pending == 0 {
		t.Fatal("the rotation finished before the kill: the test interrupted nothing")
	}
	t.Logf("killed C2 with %d of %d rotation commands pending", pending, devices)

	startChild(t, path, master, brokerURL, mode)
	waitOutbox(t, st, 0, 60*time.Second)
	// Sent is not yet delivered (a CoAP notification is on its way after
	// the publish returned), and a lost one is repaired after AwaitAck.
	deadline := time.Now().Add(30 * time.Second)
	for err := deviceBehind(t, svc, f); err != nil; err = deviceBehind(t, svc, f) {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the outbox emptied: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deviceBehind returns why the first device of f that does not read what
// C2 protects now on topic fails, or nil when every device does.
func deviceBehind(t *testing.T, svc *c2.Service, f *fleet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		msg, err := svc.ProtectMessage(context.Background(), topic, []byte("after the crash "+c.ID().String()))
		mustDo(t, err)
		if _, err := c.Unprotect(nil, msg, topic); err != nil {
			return fmt.Errorf("device %s does not hold the current key: %w", c.ID(), err)
		}
	}
	return nil
}

// registerDevice adds a device to C2 and returns its E4 client.
func registerDevice(t *testing.T, svc *c2.Service, name string) *e4.Client {
	t.Helper()
	ctx := context.Background()
	if svc.Mode() == e4.SymKey {
		added, err := svc.AddClient(ctx, c2.NewClient{Name: name})
		mustDo(t, err)
		c, err := e4.NewSymKeyClient(e4.IDFromName(name), added.Key, nil)
		mustDo(t, err)
		return c
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, err := svc.AddClient(ctx, c2.NewClient{Name: name, PublicKey: pub})
	mustDo(t, err)
	c2Pub, err := svc.C2PublicKey()
	mustDo(t, err)
	mustDo(t, svc.SendC2SignerKey(ctx, e4.IDFromName(name)))
	c, err := e4.NewPubKeyClient(e4.IDFromName(name), priv, c2Pub, nil)
	mustDo(t, err)
	return c
}

func startChild(t *testing.T, db string, master []byte, broker string, mode e4.Mode) *exec.Cmd {
	t.Helper()
	return startChildEnv(t, db, master, broker, mode)
}

// startFleetChild starts a C2 child dispatching at full speed.
func startFleetChild(t *testing.T, db string, master []byte, broker string, mode e4.Mode) *exec.Cmd {
	t.Helper()
	return startChildEnv(t, db, master, broker, mode, envFleet+"=1", envStats+"="+db+".stats")
}

// childStats reads the counters a fleet child keeps beside its database.
func childStats(t *testing.T, db string) c2.DispatchStats {
	t.Helper()
	var stats c2.DispatchStats
	raw, err := os.ReadFile(db + ".stats")
	mustDo(t, err)
	mustDo(t, json.Unmarshal(raw, &stats))
	return stats
}

func startChildEnv(t *testing.T, db string, master []byte, broker string, mode e4.Mode, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envDB+"="+db, envMaster+"="+hex.EncodeToString(master),
		envBroker+"="+broker, envMode+"="+mode.String())
	cmd.Env = append(cmd.Env, extra...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	mustDo(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("C2 child output:\n%s", out.String())
		}
	})
	return cmd
}

func countState(t *testing.T, st store.Store, state store.CommandState) (n int64) {
	t.Helper()
	mustDo(t, st.View(context.Background(), func(tx store.Tx) (err error) {
		n, err = tx.CountCommands(store.CommandFilter{State: state})
		return err
	}))
	return n
}

func waitOutbox(t *testing.T, st store.Store, pending int64, limit time.Duration) {
	t.Helper()
	eventually(t, limit, fmt.Sprintf("the outbox drains to %d pending", pending), func() bool {
		return countState(t, st, store.CommandPending) == pending
	})
	if failed := countState(t, st, store.CommandFailed); failed != 0 {
		t.Fatalf("%d commands failed", failed)
	}
}
