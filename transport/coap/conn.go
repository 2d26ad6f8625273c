package coap

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/internal/datagram"
	"github.com/e4-iot/e4kit/transport/coap/internal/msgid"
)

// Backoff between attempts to reconnect or observe again.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// lostAfter is how many keepalive pings in a row may fail before the
// connection counts as lost.
const lostAfter = 2

// periodicInterval is how often go-coap checks retransmissions (its
// default, 4 s, makes them late).
const periodicInterval = time.Second

// clientConfig applies the adapter's settings to a go-coap client.
type clientConfig struct{ t *Transport }

// UDPClientApply implements udp.Option.
func (c clientConfig) UDPClientApply(cfg *udpclient.Config) {
	t := c.t
	// The adapter does block-wise transfers itself (blockwise.go): go-coap's
	// would split every payload over 1024 bytes.
	cfg.BlockwiseEnable = false
	cfg.Errors = func(err error) { t.reportError(fmt.Errorf("coap: %w", err)) }
	cfg.Dialer = &net.Dialer{Timeout: t.cfg.Timeout}
	// Requests of concurrent Publish calls need not wait for each other
	// in go-coap (CoAP's NSTART still paces them on the wire).
	cfg.LimitClientParallelRequests = 0
	cfg.LimitClientEndpointParallelRequests = 0
	cfg.PeriodicRunner = func(f func(time.Time) bool) {
		go func() {
			for f(time.Now()) {
				time.Sleep(periodicInterval)
			}
		}()
	}
}

// dialer returns the function that opens a connection to cfg.Addr and
// checks that a broker answers there.
func (t *Transport) dialer() func(ctx context.Context) (*udpclient.Conn, error) {
	return func(ctx context.Context) (*udpclient.Conn, error) {
		var conn *udpclient.Conn
		var err error
		if t.cfg.DTLS != nil {
			conn, err = t.dialDTLS(ctx)
		} else {
			conn, err = udp.Dial(t.cfg.Addr, clientConfig{t})
		}
		if err != nil {
			return nil, fmt.Errorf("coap: dialling %s: %w", t.cfg.Addr, err)
		}
		pingCtx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
		defer cancel()
		if err := t.takeID(pingCtx, 0); err != nil {
			_ = conn.Close()
			return nil, err
		}
		if err := conn.Ping(pingCtx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("coap: no CoAP endpoint answers at %s: %w", t.cfg.Addr, err)
		}
		return conn, nil
	}
}

// dialDTLS completes the DTLS handshake within ctx before handing the
// connection to go-coap (whose dtls.Dial would handshake on the first
// write, without a deadline).
func (t *Transport) dialDTLS(ctx context.Context) (*udpclient.Conn, error) {
	opts, err := t.dtlsOptions()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: t.cfg.Timeout}
	c, err := d.DialContext(ctx, "udp", t.cfg.Addr)
	if err != nil {
		return nil, err
	}
	conn, err := piondtls.ClientWithOptions(dtlsnet.PacketConnFromConn(c), c.RemoteAddr(), opts...)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("DTLS handshake: %w", err)
	}
	return dtls.Client(conn, clientConfig{t}, options.WithCloseSocket()), nil
}

// dtlsOptions turns DTLSConfig into pion options.
func (t *Transport) dtlsOptions() ([]piondtls.ClientOption, error) {
	d := t.cfg.DTLS
	opts := []piondtls.ClientOption{
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithFlightInterval(200 * time.Millisecond),
	}
	if len(d.PSK) > 0 {
		key := bytes.Clone(d.PSK)
		opts = append(opts,
			piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			piondtls.WithPSKIdentityHint(d.PSKIdentity),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256))
		return opts, nil
	}
	serverName := d.ServerName
	if serverName == "" {
		host, _, err := net.SplitHostPort(t.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("coap: address %q: %w", t.cfg.Addr, err)
		}
		serverName = host
	}
	opts = append(opts, piondtls.WithServerName(serverName))
	if d.RootCAs != nil {
		opts = append(opts, piondtls.WithRootCAs(d.RootCAs))
	}
	if len(d.Certificates) > 0 {
		opts = append(opts, piondtls.WithCertificates(d.Certificates...))
	}
	return opts, nil
}

// start makes conn current and runs the supervisor.
func (t *Transport) start(conn *udpclient.Conn) {
	t.setConn(conn)
	t.wg.Add(1)
	go t.supervise()
}

func (t *Transport) setConn(conn *udpclient.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conn = conn
	close(t.ready)
}

// current returns the connection in use, or nil and a channel closed when
// there is one again.
func (t *Transport) current() (*udpclient.Conn, chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conn, t.ready
}

// waitConn returns the connection, waiting while the adapter reconnects.
func (t *Transport) waitConn(ctx context.Context) (*udpclient.Conn, error) {
	for {
		conn, ready := t.current()
		if conn != nil {
			return conn, nil
		}
		select {
		case <-ready:
		case <-t.done:
			return nil, transport.ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("coap: waiting for the connection: %w", ctx.Err())
		}
	}
}

// put sends one publication and waits for the broker's answer (except for
// a non-confirmable one).
func (t *Transport) put(ctx context.Context, conn *udpclient.Conn, path []message.Option, payload []byte, qos transport.QoS) error {
	if err := t.takeID(ctx, msgid.ControlReserve); err != nil {
		return err
	}
	req, err := conn.NewPutRequest(ctx, "", message.AppOctets, bytes.NewReader(payload), path...)
	if err != nil {
		return fmt.Errorf("coap: building the request: %w", err)
	}
	defer conn.ReleaseMessage(req)
	// On an application's connection, go-coap splits a payload over a
	// block, if its block-wise layer is on.
	oneDatagram := datagram.Fits(req, len(payload), t.szx, t.maxDatagram)
	if !oneDatagram && t.ownBlocks {
		return t.putBlocks(ctx, conn, path, payload)
	}
	if qos == transport.AtMostOnce && oneDatagram {
		req.SetType(message.NonConfirmable)
		if err := conn.WriteMessage(req); err != nil {
			return fmt.Errorf("coap: sending: %w", err)
		}
		return nil
	}
	resp, err := conn.Do(req)
	if err != nil {
		return err
	}
	defer conn.ReleaseMessage(resp)
	switch resp.Code() {
	case codes.Changed, codes.Created:
		return nil
	}
	return statusError(resp.Code(), resp)
}

func statusError(code codes.Code, resp *pool.Message) error {
	e := &StatusError{Code: code}
	if body, err := resp.ReadBody(); err == nil && len(body) <= 256 {
		e.Message = string(body)
	}
	if permanentStatus(code) {
		return transport.Permanent(e)
	}
	return e
}

// permanentStatus reports a client error (4.xx) that sending the same
// request again cannot fix; 4.29 (Too Many Requests) asks to come back
// later.
func permanentStatus(code codes.Code) bool {
	return code>>5 == 4 && code&0x1f != 29
}

// supervise pings the broker every KeepAlive and recovers from a lost
// connection: by reconnecting when the adapter dialled, else by
// observing again on the application's connection (or closing the
// Transport if the application closed it).
func (t *Transport) supervise() {
	defer t.wg.Done()
	var tick <-chan time.Time
	if t.cfg.KeepAlive > 0 {
		ticker := time.NewTicker(t.cfg.KeepAlive)
		defer ticker.Stop()
		tick = ticker.C
	}
	failures := 0
	for {
		conn, _ := t.current()
		if conn == nil {
			// A ConnectRetry Dial: the first connection.
			if !t.connectLoop(true) {
				return
			}
			continue
		}
		select {
		case <-t.done:
			return
		case <-conn.Done():
			if t.dial == nil {
				go func() { _ = t.Close() }()
				return
			}
			lost := fmt.Errorf("coap: connection to %s lost", conn.RemoteAddr())
			t.reportError(lost)
			t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: lost})
			if !t.reconnect(conn) {
				return
			}
			failures = 0
		case <-tick:
			if t.ping(conn) {
				failures = 0
				continue
			}
			if failures++; failures < lostAfter {
				continue
			}
			failures = 0
			silent := fmt.Errorf("coap: %s does not answer pings", conn.RemoteAddr())
			t.reportError(silent)
			if t.dial == nil {
				t.observationsLost()
				continue
			}
			t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: silent})
			if !t.reconnect(conn) {
				return
			}
		}
	}
}

// ping checks that the peer answers. It sends a GET of the CoAP discovery
// resource rather than a CoAP ping (an empty CON): any response, even 4.04,
// proves the peer is there, and go-coap v3.8.0 reuses the buffer of a ping
// that timed out while retransmitting it (a data race when the peer is
// down), which ordinary requests do not.
func (t *Transport) ping(conn *udpclient.Conn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
	defer cancel()
	if err := t.takeID(ctx, 0); err != nil {
		return false
	}
	resp, err := conn.Get(ctx, "/.well-known/core")
	if err != nil {
		return false
	}
	conn.ReleaseMessage(resp)
	return true
}

// reconnect replaces a lost connection, retrying with backoff until it
// succeeds (true) or the Transport closes (false), then observes again.
func (t *Transport) reconnect(old *udpclient.Conn) bool {
	t.mu.Lock()
	t.conn = nil
	t.ready = make(chan struct{})
	t.mu.Unlock()
	_ = old.Close()
	return t.connectLoop(false)
}

// connectLoop dials with backoff until it succeeds (true) or the
// Transport closes (false). On a reconnection every subscription observes
// again, and the Connected event follows once they all did. first is the
// first connection of a ConnectRetry Dial, whose first failure is reported
// as a Disconnected event.
func (t *Transport) connectLoop(first bool) bool {
	backoff := minBackoff
	for failures := 0; ; failures++ {
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
		conn, err := t.dial(ctx)
		cancel()
		if err == nil {
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				_ = conn.Close()
				return false
			}
			t.conn = conn
			close(t.ready)
			t.connGen++
			gen := t.connGen
			t.mu.Unlock()
			restored := t.observationsLost()
			t.wg.Go(func() { t.announceConnected(gen, restored) })
			return true
		}
		t.reportError(err)
		if first && failures == 0 {
			t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: err})
		}
		if !t.sleep(&backoff) {
			return false
		}
	}
}

// announceConnected emits the Connected event of connection gen once
// every subscription observes again on it, unless it was lost meanwhile.
func (t *Transport) announceConnected(gen uint64, restored *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { restored.Wait(); close(done) }()
	select {
	case <-done:
	case <-t.done:
		return
	}
	t.mu.Lock()
	current := t.connGen == gen && t.conn != nil
	t.mu.Unlock()
	if current {
		t.listeners.Emit(transport.ConnectionEvent{State: transport.Connected})
	}
}

// observationsLost makes every subscription observe again; the returned
// WaitGroup is done once each has (or has ended).
func (t *Transport) observationsLost() *sync.WaitGroup {
	var restored sync.WaitGroup
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		restored.Add(1)
		s.lostWaiting(&restored)
	}
	return &restored
}

// sleep waits for the backoff, doubling it; false if the Transport closed.
func (t *Transport) sleep(backoff *time.Duration) bool {
	timer := time.NewTimer(*backoff)
	defer timer.Stop()
	*backoff = min(2**backoff, maxBackoff)
	select {
	case <-timer.C:
		return true
	case <-t.done:
		return false
	}
}
