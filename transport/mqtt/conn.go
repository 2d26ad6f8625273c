package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// readBufferSize is how many bytes one read system call may fetch ahead.
// paho reads every packet as three or four reads (the first byte, each byte
// of the remaining length, the body), each a system call on a bare
// connection; through this buffer a burst of incoming messages costs one
// system call for many packets. 32 KiB holds about thirty 1 KiB messages.
const readBufferSize = 32 << 10

// bufferedConn is a net.Conn whose reads go through a bufio.Reader. Writes
// are untouched: paho writes each packet with a single Write and expects it
// on the wire when Write returns.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

// Read reads from the buffer, refilling it from the connection when empty.
func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func newBufferedConn(c net.Conn) net.Conn {
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}
}

// openConnection is paho's CustomOpenConnectionFn: it opens the network
// connection to broker as paho itself would (TCP through any proxy named in
// the environment, TLS, WebSocket) and wraps it in a bufferedConn.
func openConnection(broker *url.URL, o paho.ClientOptions) (net.Conn, error) {
	conn, err := dialBroker(broker, o)
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}

func dialBroker(broker *url.URL, o paho.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	switch broker.Scheme {
	case "ws", "wss":
		u := *broker
		u.User = nil // the WebSocket dialer refuses URLs with user info
		var tlsConfig *tls.Config
		if broker.Scheme == "wss" {
			tlsConfig = o.TLSConfig
		}
		return paho.NewWebsocket(u.String(), tlsConfig, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "tcp", "mqtt":
		return proxy.FromEnvironmentUsing(dialer).Dial("tcp", broker.Host)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		return dialTLS(broker.Host, dialer, o)
	}
	return nil, fmt.Errorf("mqtt: cannot dial scheme %q", broker.Scheme)
}

// dialTLS opens a TCP connection (through a proxy if the environment names
// one) and runs the TLS handshake on it within the connect timeout.
func dialTLS(host string, dialer *net.Dialer, o paho.ClientOptions) (net.Conn, error) {
	raw, err := proxy.FromEnvironmentUsing(dialer).Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	config := serverNamed(o.TLSConfig, host)
	conn := tls.Client(raw, config)
	ctx := context.Background()
	if o.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
		defer cancel()
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, errors.Join(errors.New("mqtt: TLS handshake"), err)
	}
	return conn, nil
}

// serverNamed returns config, or a copy of it naming the server to verify
// after host when config names none, as tls.Dial would.
func serverNamed(config *tls.Config, host string) *tls.Config {
	if config == nil {
		config = &tls.Config{}
	}
	if config.ServerName != "" || config.InsecureSkipVerify {
		return config
	}
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name = host
	}
	named := config.Clone()
	named.ServerName = name
	return named
}
