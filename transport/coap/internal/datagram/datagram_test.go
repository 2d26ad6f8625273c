package datagram_test

import (
	"bytes"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/e4-iot/e4kit/transport/coap/internal/datagram"
)

func request(t *testing.T, path string) *pool.Message {
	t.Helper()
	m := pool.NewMessage(t.Context())
	if err := m.SetupPut(path, message.Token("12345678"), message.AppOctets, nil); err != nil {
		t.Fatal(err)
	}
	m.SetCode(codes.PUT)
	m.SetType(message.Confirmable)
	m.SetMessageID(1)
	return m
}

// TestSize: Size is the length of the encoded datagram, for any payload.
func TestSize(t *testing.T) {
	m := request(t, "/ps/a/longer/topic")
	for _, n := range []int{0, 1, 1000, 5000} {
		m.SetBody(bytes.NewReader(make([]byte, n)))
		encoded, err := m.MarshalWithEncoder(coder.DefaultCoder)
		if err != nil {
			t.Fatal(err)
		}
		if got := datagram.Size(m, n); got != len(encoded) {
			t.Errorf("%d-byte payload: Size %d, encoded %d bytes", n, got, len(encoded))
		}
	}
}

// TestFits: a payload fits when the whole datagram does, or when it is no
// larger than a block; without a bound, only the latter.
func TestFits(t *testing.T) {
	m := request(t, "/ps/t")
	overhead := datagram.Size(m, 1) - 1
	largest := datagram.DefaultMaxSize - overhead
	for _, c := range []struct {
		n       int
		szx     blockwise.SZX
		maxSize int
		want    bool
	}{
		{largest, blockwise.SZX1024, datagram.DefaultMaxSize, true},
		{largest + 1, blockwise.SZX1024, datagram.DefaultMaxSize, false},
		{1024, blockwise.SZX1024, 0, true},
		{1025, blockwise.SZX1024, 0, false},
		{1024, blockwise.SZX1024, 100, true}, // one block always goes whole
		{300, blockwise.SZX256, datagram.DefaultMaxSize, true},
	} {
		if got := datagram.Fits(m, c.n, c.szx, c.maxSize); got != c.want {
			t.Errorf("Fits(%d bytes, blocks of %d, at most %d) = %v, want %v", c.n, c.szx.Size(), c.maxSize, got, c.want)
		}
	}
}

// TestResolve: the default holds with 1024-byte blocks only; negative
// means none; too large is refused.
func TestResolve(t *testing.T) {
	for _, c := range []struct {
		size    int
		szx     blockwise.SZX
		want    int
		wantErr bool
	}{
		{0, blockwise.SZX1024, datagram.DefaultMaxSize, false},
		{0, blockwise.SZX256, 0, false},
		{-1, blockwise.SZX1024, 0, false},
		{1400, blockwise.SZX1024, 1400, false},
		{1400, blockwise.SZX64, 1400, false},
		{datagram.Limit + 1, blockwise.SZX1024, 0, true},
	} {
		got, err := datagram.Resolve(c.size, c.szx)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("Resolve(%d, blocks of %d) = %d, %v; want %d, error %v", c.size, c.szx.Size(), got, err, c.want, c.wantErr)
		}
	}
}
