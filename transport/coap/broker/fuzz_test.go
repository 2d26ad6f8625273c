package broker_test

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/e4-iot/e4kit/transport/coap/broker"
)

// FuzzDatagram sends each input as one UDP datagram to a running broker,
// then pings it from the same socket and waits for the answer: a datagram
// that panics the broker crashes the test, one that wedges it times the
// ping out. The seeds are the requests the broker serves, whole or cut.
func FuzzDatagram(f *testing.F) {
	path := func(levels ...string) []message.Option {
		opts := []message.Option{{ID: message.URIPath, Value: []byte("ps")}}
		for _, l := range levels {
			opts = append(opts, message.Option{ID: message.URIPath, Value: []byte(l)})
		}
		return opts
	}
	uint32Opt := func(id message.OptionID, v uint32) message.Option {
		buf := make([]byte, 4)
		n, _ := message.EncodeUint32(buf, v)
		return message.Option{ID: id, Value: buf[:n]}
	}
	seeds := []message.Message{
		{Type: message.Confirmable, Code: codes.PUT, MessageID: 1, Token: []byte{1}, Options: path("a", "b"), Payload: []byte("hello")},
		{Type: message.NonConfirmable, Code: codes.POST, MessageID: 2, Token: []byte{2}, Options: path("a", "b"), Payload: []byte("x")},
		{Type: message.Confirmable, Code: codes.GET, MessageID: 3, Token: []byte{3, 3},
			Options: append([]message.Option{uint32Opt(message.Observe, 0)}, path("a", "+")...)},
		{Type: message.Confirmable, Code: codes.GET, MessageID: 4, Token: []byte{3, 3},
			Options: append([]message.Option{uint32Opt(message.Observe, 1)}, path("a", "+")...)},
		{Type: message.Confirmable, Code: codes.PUT, MessageID: 5, Token: []byte{5},
			Options: append(path("big"), uint32Opt(message.Block1, 0x0e), uint32Opt(message.Size1, 3000)), Payload: make([]byte, 1024)},
		{Type: message.Confirmable, Code: codes.GET, MessageID: 6, Token: []byte{6},
			Options: append(path("big"), uint32Opt(message.Block2, 0x16))},
		{Type: message.Confirmable, Code: codes.DELETE, MessageID: 7, Token: []byte{7}, Options: path("#")},
	}
	for _, m := range seeds {
		buf := make([]byte, 2048)
		n, err := coder.DefaultCoder.Encode(m, buf)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf[:n])
		f.Add(buf[:n/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x40})

	b, err := broker.Start("127.0.0.1:0", &broker.Options{Logf: func(string, ...any) {}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close() })
	sock, err := net.DialUDP("udp", nil, b.Addr().(*net.UDPAddr))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sock.Close() })
	var pingID uint16 = 0x8000 // apart from the seeds' message IDs
	f.Fuzz(func(t *testing.T, datagram []byte) {
		if _, err := sock.Write(datagram); err != nil {
			t.Fatal(err)
		}
		pingID++
		awaitPong(t, sock, pingID)
	})
}

// awaitPong sends a CoAP ping (an empty confirmable message) with id and
// reads the socket until the broker's Reset or Acknowledgement of it.
func awaitPong(t *testing.T, sock *net.UDPConn, id uint16) {
	t.Helper()
	ping := []byte{0x40, 0, 0, 0} // version 1, confirmable, no token, empty
	binary.BigEndian.PutUint16(ping[2:], id)
	if _, err := sock.Write(ping); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = sock.SetReadDeadline(deadline)
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("the broker did not answer a ping after the datagram: %v", err)
		}
		if n >= 4 && buf[0]&0x30 >= 0x20 && binary.BigEndian.Uint16(buf[2:4]) == id {
			return // a Reset or an Acknowledgement of the ping
		}
	}
}
