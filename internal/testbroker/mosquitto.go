package testbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testutil"
)

// Mosquitto binaries (Debian paths).
const (
	MosquittoBinary       = "mosquitto"
	MosquittoPasswdBinary = "mosquitto_passwd"
)

// mosquittoBootTimeout bounds one start; Mosquitto listens within ~25 ms.
const mosquittoBootTimeout = 15 * time.Second

// MosquittoOptions configures StartMosquitto. The zero value (or nil)
// starts a plain listener that accepts anonymous clients.
type MosquittoOptions struct {
	// TLS makes the listener TLS-only with a test CA made for this broker,
	// and requires client certificates signed by it (mutual TLS). See
	// Mosquitto.ClientTLS.
	TLS bool
	// Username and Password, when Username is set, are the only
	// credentials accepted (anonymous clients are refused).
	Username string
	Password string
	// DuplicateMessages sets allow_duplicate_messages: a client whose
	// subscriptions overlap receives one copy of a message per matching
	// subscription. Mosquitto 2.0 warns that this will become the default.
	DuplicateMessages bool
	// LargeQueues raises the per-client limit on queued messages from
	// 1000 to a million, for a test client that stands in for thousands of
	// devices and would otherwise see messages dropped. (The value 0,
	// "no limit", makes Mosquitto 2.0.11 drop publishers of QoS 2 bursts.)
	LargeQueues bool
}

// Mosquitto is a Mosquitto broker started for tests on a free loopback
// port, without persistence: a restart loses every session.
type Mosquitto struct {
	dir  string
	port int
	conf string
	opts MosquittoOptions
	pki  *testutil.PKI

	mu   sync.Mutex
	proc *Process
}

// StartMosquitto starts a broker for one test (or benchmark) and stops it
// when the test ends.
func StartMosquitto(t testing.TB, opts *MosquittoOptions) *Mosquitto {
	t.Helper()
	RequireBinary(t, MosquittoBinary)
	if opts != nil && opts.Username != "" {
		RequireBinary(t, MosquittoPasswdBinary)
	}
	var m *Mosquitto
	var err error
	for attempt := 1; ; attempt++ {
		m, err = NewMosquitto(t.TempDir(), FreePort(t, "tcp"), opts)
		if err == nil || attempt == portAttempts || !portTaken(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// NewMosquitto writes the configuration (and the certificates or password
// file the options ask for) into dir and starts the broker on port. Stop
// it with Stop.
func NewMosquitto(dir string, port int, opts *MosquittoOptions) (*Mosquitto, error) {
	m := &Mosquitto{dir: dir, port: port, conf: filepath.Join(dir, "mosquitto.conf")}
	if opts != nil {
		m.opts = *opts
	}
	if err := m.writeConfig(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoBootTimeout)
	defer cancel()
	if err := m.start(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// writeConfig writes mosquitto.conf and what it refers to.
func (m *Mosquitto) writeConfig() error {
	var lines []string
	if m.opts.DuplicateMessages {
		lines = append(lines, "allow_duplicate_messages true") // a global option: before the listener
	}
	if m.opts.LargeQueues {
		lines = append(lines, "max_queued_messages 1000000") // global too
	}
	// Without TCP_NODELAY, Nagle's algorithm holds a small write back while
	// earlier data is unacknowledged, and the client's delayed ACK can then
	// stall delivery for up to 40 ms: runs of small messages came out
	// bimodal, some rounds several times slower than others.
	lines = append(lines, "set_tcp_nodelay true") // global, like the above
	lines = append(lines,
		fmt.Sprintf("listener %d 127.0.0.1", m.port),
		"persistence false",
		// Started as root, Mosquitto switches to user mosquitto before
		// reading the key and password files, which live in a directory
		// only root may read.
		"user root",
		"log_dest stderr",
	)
	if m.opts.Username != "" {
		pw := filepath.Join(m.dir, "passwords")
		out, err := exec.Command(MosquittoPasswdBinary, "-c", "-b", pw, m.opts.Username, m.opts.Password).CombinedOutput()
		if err != nil {
			return fmt.Errorf("testbroker: mosquitto_passwd: %w: %s", err, out)
		}
		lines = append(lines, "allow_anonymous false", "password_file "+pw)
	} else {
		lines = append(lines, "allow_anonymous true")
	}
	if m.opts.TLS {
		pki, err := testutil.NewPKI(m.dir)
		if err != nil {
			return err
		}
		m.pki = pki
		lines = append(lines,
			"cafile "+pki.CAFile,
			"certfile "+pki.ServerCertFile,
			"keyfile "+pki.ServerKeyFile,
			"require_certificate true",
		)
	}
	return os.WriteFile(m.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// start runs the broker and waits until it accepts connections.
func (m *Mosquitto) start(ctx context.Context) error {
	proc := NewProcess(MosquittoBinary, []string{"-c", m.conf}, nil, m.dir)
	if err := proc.Start(); err != nil {
		return fmt.Errorf("testbroker: %w", err)
	}
	m.mu.Lock()
	m.proc = proc
	m.mu.Unlock()
	// Mosquitto says "running" once its listeners are open. Waiting for it
	// first matters when another process took the port: a connection to
	// that process would otherwise pass for our broker, which exits.
	if err := waitOutput(ctx, proc, " running"); err != nil {
		proc.Stop(time.Second)
		return fmt.Errorf("testbroker: mosquitto did not start: %w\n%s", err, proc.Output())
	}
	if err := waitListening(ctx, proc, m.Addr()); err != nil {
		proc.Stop(time.Second)
		return fmt.Errorf("testbroker: mosquitto did not start: %w\n%s", err, proc.Output())
	}
	return nil
}

// waitOutput waits until proc has written marker, or has exited.
func waitOutput(ctx context.Context, proc *Process, marker string) error {
	for !strings.Contains(proc.Output(), marker) {
		if proc.Exited() {
			return errors.New("the process exited")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q in its output: %w", marker, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// waitListening waits for addr to accept connections, or for proc to die.
func waitListening(ctx context.Context, proc *Process, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if proc.Exited() {
			return fmt.Errorf("the process exited (%v)", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", addr, ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Addr returns "127.0.0.1:port".
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// URL returns the broker URL for MQTT clients: "tcp://127.0.0.1:port", or
// "ssl://localhost:port" for a TLS listener (the name its certificate has).
func (m *Mosquitto) URL() string {
	if m.opts.TLS {
		return "ssl://localhost:" + strconv.Itoa(m.port)
	}
	return "tcp://" + m.Addr()
}

// PID returns the process id of the running broker, or 0.
func (m *Mosquitto) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return 0
	}
	return m.proc.PID()
}

// Output returns what the broker printed since it last started.
func (m *Mosquitto) Output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return ""
	}
	return m.proc.Output()
}

// Restart stops the broker by its PID and starts it again on the same port,
// returning once it accepts connections. Every session is lost.
func (m *Mosquitto) Restart(ctx context.Context) error {
	m.Stop()
	return m.start(ctx)
}

// Start starts a stopped broker again on the same port, returning once it
// accepts connections.
func (m *Mosquitto) Start(ctx context.Context) error {
	m.mu.Lock()
	running := m.proc != nil
	m.mu.Unlock()
	if running {
		return errors.New("testbroker: mosquitto is already running")
	}
	return m.start(ctx)
}

// Stop stops the broker; it is idempotent.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	proc := m.proc
	m.proc = nil
	m.mu.Unlock()
	if proc != nil {
		proc.Stop(5 * time.Second)
	}
}

// ClientTLS returns a client configuration for the TLS listener that trusts
// the test CA and presents a client certificate signed by it; nil without
// TLS.
func (m *Mosquitto) ClientTLS() *tls.Config { return clientTLS(m.pki, true) }

// ClientTLSWithoutCert is ClientTLS without the client certificate: the
// broker must refuse it.
func (m *Mosquitto) ClientTLSWithoutCert() *tls.Config { return clientTLS(m.pki, false) }

// clientTLS returns p's client configuration (see testutil.PKI.ClientTLS);
// nil for a nil p, a broker without TLS.
func clientTLS(p *testutil.PKI, withCert bool) *tls.Config {
	if p == nil {
		return nil
	}
	return p.ClientTLS(withCert)
}
