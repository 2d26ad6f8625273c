package coap_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// binDir holds the e4 binary built for the tests of this package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e4-coap-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// e4Binary builds cmd/e4 once and returns its path.
func e4Binary(t testing.TB) string {
	t.Helper()
	path := filepath.Join(binDir, "e4")
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", path, "github.com/e4-iot/e4kit/cmd/e4").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building cmd/e4: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return path
}

// cliBroker is "e4 broker coap" run by a test on a fixed free port.
type cliBroker struct {
	t    testing.TB
	addr string
	args []string

	mu   sync.Mutex
	proc *testbroker.Process
}

func startCLIBroker(t testing.TB, extra ...string) *cliBroker {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "udp")))
	c := &cliBroker{t: t, addr: addr, args: append([]string{"broker", "coap", "--listen", addr}, extra...)}
	t.Cleanup(func() { c.stop(5 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs the binary and waits until it says where it listens.
func (c *cliBroker) start(ctx context.Context) error {
	p := testbroker.NewProcess(e4Binary(c.t), c.args, nil, "")
	if err := p.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.proc = p
	c.mu.Unlock()
	for !strings.Contains(p.Output(), "listening on") {
		if p.Exited() {
			return fmt.Errorf("e4 broker coap exited: %s", p.Output())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("e4 broker coap did not start: %w; output: %s", ctx.Err(), p.Output())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// stop sends SIGTERM (then SIGKILL after grace) and returns the output.
func (c *cliBroker) stop(grace time.Duration) string {
	c.mu.Lock()
	p := c.proc
	c.proc = nil
	c.mu.Unlock()
	if p == nil {
		return ""
	}
	p.Stop(grace)
	return p.Output()
}

// kill ends the broker with SIGKILL: no goodbye to observers.
func (c *cliBroker) kill() {
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p != nil {
		_ = syscall.Kill(p.PID(), syscall.SIGKILL)
	}
	c.stop(time.Second)
}

func (c *cliBroker) restart(ctx context.Context) error {
	c.stop(5 * time.Second)
	for {
		err := c.start(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond) // the port may not be free yet
	}
}

// TestCLIBroker: the binary says where it listens, passes the conformance
// suite (restarts included: SIGTERM, then a new process on the same port)
// and exits cleanly on SIGTERM.
func TestCLIBroker(t *testing.T) {
	c := startCLIBroker(t)
	if out := c.proc.Output(); !strings.Contains(out, "listening on coap://"+c.addr) {
		t.Errorf("output %q does not say where the broker listens", out)
	}
	transporttest.RunConformanceTests(t, func(context.Context, *testing.T) (transporttest.Harness, error) {
		return &cliHarness{broker: c}, nil
	})
	out := c.stop(5 * time.Second)
	if !strings.Contains(out, "stopping") {
		t.Errorf("output after SIGTERM %q, want a clean stop", out)
	}
}

type cliHarness struct{ broker *cliBroker }

func (h *cliHarness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	return coap.Dial(ctx, testConfig(h.broker.addr))
}

func (h *cliHarness) RestartBroker(ctx context.Context) error { return h.broker.restart(ctx) }

func (h *cliHarness) Features() transporttest.Features {
	return transporttest.Features{Wildcards: true, OrderedPerTopic: true, MaxPayload: 64 << 10, BrokerRestart: true, EmptyPayload: true}
}

func (h *cliHarness) Close() {}

// TestCLICrash: after the broker dies without a word (SIGKILL) and comes
// back, subscriptions resume: after a long outage because keepalive pings
// failed, after an instant restart because observations are renewed.
func TestCLICrash(t *testing.T) {
	for _, outage := range []time.Duration{0, 3 * time.Second} {
		t.Run(fmt.Sprintf("outage %v", outage), func(t *testing.T) {
			c := startCLIBroker(t)
			cfg := testConfig(c.addr)
			cfg.Refresh = 2 * time.Second
			pub, subscriber := dial(t, cfg), dial(t, cfg)
			sub := subscribe(t, subscriber, "crash")
			publish(t, pub, "crash", []byte("before"))
			if m := receive(t, sub); string(m.Payload) != "before" {
				t.Fatalf("got %q", m.Payload)
			}
			c.kill()
			time.Sleep(outage)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := c.restart(ctx); err != nil {
				t.Fatal(err)
			}
			awaitResumed(t, pub, sub, "crash")
		})
	}
}

// awaitResumed publishes until a message published after the restart
// arrives.
func awaitResumed(t *testing.T, pub transport.Transport, sub transport.Subscription, topic string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		payload := fmt.Sprintf("after %d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := pub.Publish(ctx, topic, []byte(payload))
		cancel()
		if err != nil {
			continue
		}
		ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
		m, err := sub.Receive(ctx)
		cancel()
		if err == nil && strings.HasPrefix(string(m.Payload), "after ") {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Receive: %v", err)
		}
	}
	t.Fatalf("no message arrived within %v of the restart", testTimeout)
}

// TestCLIDTLSPSK: the binary speaks DTLS with a PSK read from a file and
// accepts only the configured identity.
func TestCLIDTLSPSK(t *testing.T) {
	pskFile := filepath.Join(t.TempDir(), "broker.psk")
	if err := os.WriteFile(pskFile, []byte("00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCLIBroker(t, "--dtls-psk-file", pskFile, "--dtls-psk-identity", "device-1")
	if out := c.proc.Output(); !strings.Contains(out, "coaps://") {
		t.Errorf("output %q does not announce coaps", out)
	}
	key := []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	cfg := testConfig(c.addr)
	cfg.DTLS = &coap.DTLSConfig{PSKIdentity: []byte("device-1"), PSK: key}
	roundTrip(t, dial(t, cfg), "cli/dtls")

	cfg.DTLS = &coap.DTLSConfig{PSKIdentity: []byte("device-2"), PSK: key}
	expectDialFails(t, cfg)
}
