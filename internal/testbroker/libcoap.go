package testbroker

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// LibcoapServer is libcoap's CoAP server without DTLS (Debian libcoap3-bin).
const LibcoapServer = "coap-server-notls"

// libcoapResources is how many resources clients may create by PUT.
const libcoapResources = "100"

// libcoapBootTimeout bounds the wait for a fresh server to answer a ping.
const libcoapBootTimeout = 10 * time.Second

// Libcoap is a libcoap coap-server-notls started for a test on a free
// loopback UDP port. Clients create resources with PUT and observe them;
// it keeps the latest value of each resource only, so it is an interop
// peer, not a queue: observers may miss messages of a burst.
type Libcoap struct {
	port int

	mu   sync.Mutex
	proc *Process
}

// StartLibcoap starts the server for one test and stops it when the test
// ends. A missing binary fails the test with InstallHint.
func StartLibcoap(t testing.TB) *Libcoap {
	t.Helper()
	RequireBinary(t, LibcoapServer)
	l := &Libcoap{}
	t.Cleanup(l.Stop)
	for attempt := 1; ; attempt++ {
		l.port = FreePort(t, "udp")
		ctx, cancel := context.WithTimeout(context.Background(), libcoapBootTimeout)
		err := l.start(ctx)
		cancel()
		if err == nil {
			return l
		}
		if attempt == portAttempts || !portTaken(err) {
			t.Fatal(err)
		}
	}
}

// Addr returns the server's "127.0.0.1:port".
func (l *Libcoap) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.port)) }

// Restart stops the server and starts a new one on the same port; the new
// one has none of the resources clients created.
func (l *Libcoap) Restart(ctx context.Context) error {
	l.Stop()
	return l.start(ctx)
}

// Stop ends the server; it is idempotent.
func (l *Libcoap) Stop() {
	l.mu.Lock()
	p := l.proc
	l.proc = nil
	l.mu.Unlock()
	if p != nil {
		p.Stop(5 * time.Second)
	}
}

func (l *Libcoap) start(ctx context.Context) error {
	p := NewProcess(LibcoapServer, []string{"-A", "127.0.0.1", "-p", strconv.Itoa(l.port), "-d", libcoapResources}, nil, "")
	if err := p.Start(); err != nil {
		return fmt.Errorf("testbroker: %w", err)
	}
	if err := WaitCoAP(ctx, l.Addr()); err != nil {
		p.Stop(time.Second)
		return fmt.Errorf("testbroker: %s on port %d: %w; output: %s", LibcoapServer, l.port, err, p.Output())
	}
	l.mu.Lock()
	l.proc = p
	l.mu.Unlock()
	return nil
}

// WaitCoAP waits until a CoAP endpoint answers a ping (an empty
// confirmable message, answered with a reset) at the UDP address addr.
func WaitCoAP(ctx context.Context, addr string) error {
	var lastErr error
	for {
		if lastErr = pingCoAP(addr); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for CoAP at %s: %w (last error: %v)", addr, ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func pingCoAP(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	var mid [2]byte
	_, _ = rand.Read(mid[:])
	// Version 1, type CON, no token, code 0.00, message id.
	ping := []byte{0x40, 0x00, mid[0], mid[1]}
	if _, err := c.Write(ping); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	// Version 1, type RST (or ACK), same message id.
	if n < 4 || buf[0]>>6 != 1 || buf[0]>>4&3 < 2 || buf[2] != mid[0] || buf[3] != mid[1] {
		return fmt.Errorf("unexpected answer % x to a ping", buf[:n])
	}
	return nil
}
