// Package mqttbroker is an embedded MQTT broker (mochi-mqtt) for zero-setup
// use: examples, demos and tests that need no external server. It serves
// MQTT 3.1.1 and 5 over TCP, accepts every client by default, and can
// require one username and password instead.
//
//	b, err := mqttbroker.Start("127.0.0.1:0", nil)
//	defer b.Close()
//	t, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{b.URL()}})
//
// Sessions and retained messages live in memory only.
package mqttbroker

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configures a Broker. The zero value is usable: every client
// is accepted and the log is discarded.
type Options struct {
	// Username and Password, when Username is set, make the broker accept
	// only clients that present them; the comparison is exact (no
	// patterns).
	Username, Password string

	// Logger receives the broker's log; nil discards it.
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	server   *mochi.Server
	listener *trackingListener
	addr     string
	close    sync.Once
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves MQTT
// until Close. opts may be nil.
func Start(addr string, opts *Options) (*Broker, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: %w", err)
	}
	server := mochi.New(&mochi.Options{Logger: o.Logger, InlineClient: false})
	if err := server.AddHook(&authHook{username: o.Username, password: o.Password}, nil); err != nil {
		ln.Close()
		return nil, fmt.Errorf("mqttbroker: adding the auth hook: %w", err)
	}
	tracked := &trackingListener{Listener: ln, conns: make(map[*trackedConn]struct{})}
	if err := server.AddListener(listeners.NewNet("tcp", tracked)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("mqttbroker: %w", err)
	}
	if err := server.Serve(); err != nil {
		_ = server.Close()
		return nil, fmt.Errorf("mqttbroker: %w", err)
	}
	return &Broker{server: server, listener: tracked, addr: ln.Addr().String()}, nil
}

// Addr returns the address the broker listens on, "host:port".
func (b *Broker) Addr() string { return b.addr }

// URL returns the broker URL for MQTT clients, "tcp://host:port".
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Close disconnects every client and stops listening. It is idempotent.
func (b *Broker) Close() error {
	var err error
	b.close.Do(func() {
		// Connections first, and mochi's server only once it has let go of
		// their clients: mochi v2.7.9's Close lists the clients under a read
		// lock it takes twice, which deadlocks if a client is removed in
		// between (seen in the C2 API tests under the race detector).
		b.listener.closeAll()
		b.awaitClientsGone(closeWait)
		err = b.server.Close()
	})
	if err != nil {
		return fmt.Errorf("mqttbroker: %w", err)
	}
	return nil
}

// closeWait bounds how long Close waits for the server to forget the
// clients whose connections it closed.
const closeWait = 5 * time.Second

// awaitClientsGone waits until no client is connected any more (mochi
// counts a client out once it removed it), or limit passed. Persistent
// sessions stay in the server's client list, so the count of connected
// clients is what tells.
func (b *Broker) awaitClientsGone(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for atomic.LoadInt64(&b.server.Info.ClientsConnected) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// authHook accepts every client, or only the configured credentials, and
// allows every topic.
type authHook struct {
	mochi.HookBase
	username, password string
}

// ID names the hook in mochi's log.
func (h *authHook) ID() string { return "e4kit-auth" }

// Provides tells mochi which events the hook handles.
func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

// OnConnectAuthenticate checks the credentials, if any are configured, in
// constant time.
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if h.username == "" {
		return true
	}
	userOK := subtle.ConstantTimeCompare(cl.Properties.Username, []byte(h.username))
	passOK := subtle.ConstantTimeCompare(pk.Connect.Password, []byte(h.password))
	return userOK&passOK == 1
}

// OnACLCheck allows every topic to every authenticated client.
func (h *authHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// trackingListener remembers the connections it accepted, so that Close
// can end them all: mochi leaves unserved a connection its accept loop
// returns while the server is closing, and the client would wait for a
// CONNACK until its timeout instead of reconnecting at once.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

// Accept returns the next connection, tracked until it is closed.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, owner: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes the listener and every connection still open.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	_ = l.Listener.Close()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

func (l *trackingListener) forget(c *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// trackedConn leaves its listener's set when closed.
type trackedConn struct {
	net.Conn
	owner  *trackingListener
	closed atomic.Bool
}

// Close closes the connection once.
func (c *trackedConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.owner.forget(c)
	return c.Conn.Close()
}
