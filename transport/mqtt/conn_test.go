package mqtt

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// countingConn counts the Read calls that reach the connection.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// burstOfPublishes encodes n QoS 0 PUBLISH packets of 1 KiB, each payload
// starting with its index.
func burstOfPublishes(t *testing.T, n int) []byte {
	t.Helper()
	var wire bytes.Buffer
	for i := range n {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.TopicName = "burst/topic"
		p.Payload = append([]byte(fmt.Sprintf("%06d", i)), make([]byte, 1018)...)
		if err := p.Write(&wire); err != nil {
			t.Fatal(err)
		}
	}
	return wire.Bytes()
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// readsForBurst sends n packets at once and returns how many Read calls
// paho's packet reader made on the connection to take them all, checking
// each packet's payload on the way.
func readsForBurst(t *testing.T, n int, wrap func(net.Conn) net.Conn) int64 {
	t.Helper()
	client, server := loopbackPair(t)
	counted := &countingConn{Conn: client}
	conn := wrap(counted)
	wire := burstOfPublishes(t, n)
	go func() { _, _ = server.Write(wire) }()
	for i := range n {
		cp, err := packets.ReadPacket(conn)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		p, ok := cp.(*packets.PublishPacket)
		if !ok || p.TopicName != "burst/topic" || string(p.Payload[:6]) != fmt.Sprintf("%06d", i) || len(p.Payload) != 1024 {
			t.Fatalf("packet %d came out as %T %q", i, cp, cp.String())
		}
	}
	return counted.reads.Load()
}

// TestBufferedConnReadsManyPacketsPerCall: on a bare connection paho makes
// at least three reads (each a system call) per packet; through
// bufferedConn a burst of packets takes a small fraction of that.
func TestBufferedConnReadsManyPacketsPerCall(t *testing.T) {
	const n = 200
	bare := readsForBurst(t, n, func(c net.Conn) net.Conn { return c })
	buffered := readsForBurst(t, n, newBufferedConn)
	t.Logf("reads for %d packets: %d bare, %d buffered", n, bare, buffered)
	if bare < 3*n {
		t.Fatalf("bare connection: %d reads for %d packets; the premise (3 or more per packet) no longer holds", bare, n)
	}
	if buffered > n/4 {
		t.Fatalf("buffered connection: %d reads for %d packets, want at most %d", buffered, n, n/4)
	}
}

// TestClientOptionsOpenBufferedConnections: the options Dial gives paho
// open connections through openConnection, so Dial's clients read through
// the buffer.
func TestClientOptionsOpenBufferedConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	broker := "tcp://" + l.Addr().String()
	opts, err := clientOptions(Config{Brokers: []string{broker}})
	if err != nil {
		t.Fatal(err)
	}
	if opts.CustomOpenConnectionFn == nil {
		t.Fatal("clientOptions sets no connection opener: reads would be unbuffered")
	}
	u, _ := url.Parse(broker)
	conn, err := opts.CustomOpenConnectionFn(u, *opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*bufferedConn); !ok {
		t.Fatalf("opened a %T, want *bufferedConn", conn)
	}
}

func TestOpenConnectionRefusesUnknownScheme(t *testing.T) {
	u, _ := url.Parse("unix:///tmp/broker.sock")
	_, err := openConnection(u, *paho.NewClientOptions())
	if err == nil || !strings.Contains(err.Error(), `"unix"`) {
		t.Fatalf("err = %v, want one naming the scheme", err)
	}
}

// TestServerNamed: the certificate is checked against the broker's host
// name unless the configuration names another or skips verification, and
// the caller's configuration is never modified.
func TestServerNamed(t *testing.T) {
	if got := serverNamed(nil, "broker.example:8883").ServerName; got != "broker.example" {
		t.Errorf("nil config: ServerName %q, want broker.example", got)
	}
	if got := serverNamed(nil, "[::1]:8883").ServerName; got != "::1" {
		t.Errorf("IPv6 host: ServerName %q, want ::1", got)
	}
	own := &tls.Config{MinVersion: tls.VersionTLS13}
	named := serverNamed(own, "broker.example:8883")
	if own.ServerName != "" {
		t.Errorf("the caller's config was modified: ServerName %q", own.ServerName)
	}
	if named.ServerName != "broker.example" || named.MinVersion != tls.VersionTLS13 {
		t.Errorf("copy: ServerName %q, MinVersion %x", named.ServerName, named.MinVersion)
	}
	explicit := &tls.Config{ServerName: "other.example"}
	if got := serverNamed(explicit, "broker.example:8883"); got != explicit {
		t.Error("a config that names its server was replaced")
	}
	insecure := &tls.Config{InsecureSkipVerify: true}
	if got := serverNamed(insecure, "broker.example:8883"); got != insecure || got.ServerName != "" {
		t.Error("a config that skips verification was given a server name")
	}
}
