package c2

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// testEnv is a service on a fresh SQLite database.
type testEnv struct {
	svc    *Service
	st     store.Store
	dbPath string
	master []byte
	cancel context.CancelFunc
	done   chan error
}

// newTestService opens a service in mode over tr (nil for none) and runs
// its dispatcher until the test ends.
func newTestService(t testing.TB, mode e4.Mode, tr transport.Transport, edit ...func(*Config)) *testEnv {
	t.Helper()
	env := &testEnv{dbPath: filepath.Join(t.TempDir(), "c2.db")}
	env.master, _ = seal.GenerateKey()
	env.start(t, mode, tr, edit...)
	return env
}

func (env *testEnv) start(t testing.TB, mode e4.Mode, tr transport.Transport, edit ...func(*Config)) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, env.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := seal.NewKeyring(env.master)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: mode, Store: st, Keyring: keys, Transport: tr,
		Dispatch: DispatchConfig{PollInterval: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}}
	for _, e := range edit {
		e(&cfg)
	}
	svc, err := New(ctx, cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	env.svc, env.st, env.cancel, env.done = svc, st, cancel, make(chan error, 1)
	go func() { env.done <- svc.Run(runCtx) }()
	t.Cleanup(env.stop)
	if tr != nil {
		select {
		case <-svc.Dispatcher().Listening():
		case err := <-env.done:
			t.Fatalf("Run: %v", err)
		}
	}
}

// stop ends the dispatcher and closes the database; it may be called twice.
func (env *testEnv) stop() {
	if env.cancel == nil {
		return
	}
	env.cancel()
	<-env.done
	env.st.Close()
	env.cancel = nil
}

// waitIdle waits until the outbox has no pending command.
func (env *testEnv) waitIdle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := env.svc.CountCommands(context.Background(), pendingFilter)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d commands still pending after 20 s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// device is a simulated E4 device on a transport.
type device struct {
	t      *testing.T
	client *e4.Client
	tr     *e4transport.Protected

	mu              sync.Mutex
	commands        []command.Code
	cmdErrs         []error
	unauthentic     int
	lastUnauthentic error // why the last one was refused
	// changed receives a value (buffered, never blocking the sender)
	// after each command the device handled, for the waits below.
	changed chan struct{}
}

func newSKDevice(t *testing.T, tr transport.Transport, name string, key []byte) *device {
	t.Helper()
	c, err := e4.NewSymKeyClient(e4.IDFromName(name), key, deviceConfig())
	if err != nil {
		t.Fatal(err)
	}
	return attachDevice(t, tr, c)
}

func newPKDevice(t *testing.T, tr transport.Transport, name string, priv ed25519.PrivateKey, c2Public []byte) *device {
	t.Helper()
	c, err := e4.NewPubKeyClient(e4.IDFromName(name), priv, c2Public, deviceConfig())
	if err != nil {
		t.Fatal(err)
	}
	return attachDevice(t, tr, c)
}

// deviceConfig is the configuration of the tests' devices: the defaults,
// which accept commands dated up to e4.DefaultCommandFutureSkew ahead, as C2
// dates a burst of commands to one client a second apart
// (DispatchConfig.CommandLead).
func deviceConfig() *e4.Config {
	return &e4.Config{}
}

func attachDevice(t *testing.T, tr transport.Transport, c *e4.Client) *device {
	t.Helper()
	d := &device{t: t, client: c, changed: make(chan struct{}, 1)}
	p, err := e4transport.Protect(context.Background(), tr, c, &e4transport.Options{
		// These devices count the commands they apply. A sync request
		// made before a command arrived says the device lacks its key, and
		// C2 sends that key again (state_test.go covers sync), which would
		// shift the counts.
		NoSync: true,
		OnCommand: func(cmd command.Code, err error) {
			d.mu.Lock()
			defer d.mu.Unlock()
			defer d.signal()
			if errors.Is(err, e4.ErrAuthentication) {
				// During a client-key change C2 sends each command under
				// both keys: the copy under the key the device does not
				// hold is dropped.
				d.unauthentic++
				d.lastUnauthentic = err
				return
			}
			d.commands = append(d.commands, cmd)
			d.cmdErrs = append(d.cmdErrs, err)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.tr = p
	t.Cleanup(func() { p.Close() })
	return d
}

// signal tells a waiting test that the device handled a command.
func (d *device) signal() {
	select {
	case d.changed <- struct{}{}:
	default: // a signal is pending already: the waiter looks at everything
	}
}

// awaitChange waits until the device handles another command, and reports
// false once deadline passed.
func (d *device) awaitChange(deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-d.changed:
		return true
	case <-timer.C:
		return false
	}
}

// waitCommands waits until the device applied n commands and fails the
// test if any was refused.
func (d *device) waitCommands(n int) []command.Code {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d.mu.Lock()
		got := append([]command.Code(nil), d.commands...)
		errs := errors.Join(d.cmdErrs...)
		d.mu.Unlock()
		if errs != nil {
			d.t.Fatalf("device %s refused a command: %v", d.client.ID(), errs)
		}
		if len(got) >= n {
			return got
		}
		if !d.awaitChange(deadline) {
			d.t.Fatalf("device %s applied %d commands (%v), want %d", d.client.ID(), len(got), got, n)
		}
	}
}

// receive waits for the next message on sub.
func receive(t *testing.T, sub transport.Subscription) *transport.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := sub.Receive(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return m
}

func subscribe(t *testing.T, tr transport.Transport, filter string) transport.Subscription {
	t.Helper()
	sub, err := tr.Subscribe(context.Background(), filter)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func sqliteOpenCtx(ctx context.Context, path string) (store.Store, error) {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// flakyTransport fails the first failures publishes on control topics,
// then passes everything through.
type flakyTransport struct {
	transport.Transport
	mu       sync.Mutex
	failures int
	err      error
}

func (f *flakyTransport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	f.mu.Lock()
	if f.failures > 0 && strings.HasPrefix(topic, e4.ControlTopicPrefix) {
		f.failures--
		f.mu.Unlock()
		return f.err
	}
	f.mu.Unlock()
	return f.Transport.Publish(ctx, topic, payload, opts...)
}
