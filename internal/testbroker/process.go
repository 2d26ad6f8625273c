// Package testbroker starts real brokers (Mosquitto, RabbitMQ, libcoap's
// CoAP server, ...) for tests, on free loopback ports, and stops them by PID.
// A missing binary fails the test with what to install: tests that need a
// broker never skip.
package testbroker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testutil"
)

// InstallHint is printed when a broker binary is missing.
const InstallHint = "run scripts/install-test-deps.sh (as root) or apt-get install mosquitto mosquitto-clients rabbitmq-server libcoap3-bin"

// RequireBinary fails the test when path is not an executable file.
func RequireBinary(t testing.TB, path string) {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("%s not found (%v): %s", path, err, InstallHint)
	}
}

// FreePort returns a loopback port that was free a moment ago, for TCP
// (network "tcp") or UDP ("udp").
func FreePort(t testing.TB, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// portAttempts is how many ports a server start tries: the port FreePort
// returns is free when it returns, but test packages run in parallel and
// another server may bind it before ours does.
const portAttempts = 3

// portTaken reports whether err says that a server could not bind its
// port, which is worth another try on another port.
func portTaken(err error) bool {
	text := strings.ToLower(err.Error())
	for _, sign := range []string{"address already in use", "eaddrinuse", "could not bind"} {
		if strings.Contains(text, sign) {
			return true
		}
	}
	return false
}

// WaitTCP waits until something accepts TCP connections on addr.
func WaitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", addr, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Process is a broker process started by a test. Its output is kept for
// the failure message.
type Process struct {
	name string
	args []string
	env  []string
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	output *testutil.Buffer
	done   chan struct{}
}

// NewProcess describes a process; Start runs it.
func NewProcess(name string, args []string, env []string, dir string) *Process {
	return &Process{name: name, args: args, env: env, dir: dir}
}

// Start runs the process in its own process group.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.name, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Dir = p.dir
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.output, p.done = cmd, out, done
	return nil
}

// PID returns the process id of the running process, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits for the process to end.
func (p *Process) Stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	out := p.output
	p.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}
