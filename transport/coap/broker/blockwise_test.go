package broker_test

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport/coap/broker"
)

// The broker's own block-wise transfers (go-coap's layer is off on its
// side), driven block by block from a connection without go-coap's
// block-wise layer either.

// startRaw starts a broker with opts and dials it without block-wise
// transfers: every block is the test's.
func startRaw(t *testing.T, opts broker.Options) (*broker.Broker, *udpclient.Conn) {
	t.Helper()
	opts.Logf = t.Logf
	b, err := broker.Start("127.0.0.1:0", &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, dialRaw(t, b)
}

func dialRaw(t *testing.T, b *broker.Broker) *udpclient.Conn {
	t.Helper()
	conn, err := udp.Dial(b.Addr().String(), options.WithBlockwise(false, blockwise.SZX1024, time.Second), options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// answer is what the broker answered to one block, copied out of go-coap's
// pool.
type answer struct {
	code   codes.Code
	block1 uint32 // 0 without a Block1 option
	size1  uint32
}

func blockOption(t *testing.T, szx blockwise.SZX, num int64, more bool) uint32 {
	t.Helper()
	v, err := blockwise.EncodeBlockOption(szx, num, more)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// putBlock sends one Block1 block of a PUT to path, with Size1 if size1 > 0.
func putBlock(t *testing.T, conn *udpclient.Conn, path string, token message.Token, block uint32, body []byte, size1 int) answer {
	t.Helper()
	req, err := conn.NewPutRequest(ctx(t), path, message.AppOctets, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.ReleaseMessage(req)
	req.SetToken(token)
	req.SetOptionUint32(message.Block1, block)
	if size1 > 0 {
		req.SetOptionUint32(message.Size1, uint32(size1))
	}
	resp, err := conn.Do(req)
	if err != nil {
		t.Fatalf("PUT block %#x: %v", block, err)
	}
	defer conn.ReleaseMessage(resp)
	a := answer{code: resp.Code()}
	a.block1, _ = resp.GetOptionUint32(message.Block1)
	a.size1, _ = resp.GetOptionUint32(message.Size1)
	return a
}

func token(t *testing.T) message.Token {
	t.Helper()
	tok, err := message.GetToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func random(n int) []byte {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return p
}

// TestBlock1Upload: a publication in blocks (one token, or a new token per
// block) is published whole once its last block arrived; each block is
// acknowledged with 2.31 and its Block1; a block out of order, a block
// before the last that is not whole, and a payload over MaxPayload are
// refused.
func TestBlock1Upload(t *testing.T) {
	_, conn := startRaw(t, broker.Options{MaxPayload: 1000})
	notes, _ := observe(t, conn, "/ps/up")
	next(t, notes) // the registration
	payload := random(150)
	blocks := []struct {
		num  int64
		more bool
		body []byte
	}{{0, true, payload[:64]}, {1, true, payload[64:128]}, {2, false, payload[128:]}}

	for _, tokens := range []string{"one token", "a token per block"} {
		tok := token(t)
		for _, blk := range blocks {
			if tokens != "one token" {
				tok = token(t)
			}
			a := putBlock(t, conn, "/ps/up", tok, blockOption(t, blockwise.SZX64, blk.num, blk.more), blk.body, 0)
			want := codes.Continue
			if !blk.more {
				want = codes.Changed
			}
			if a.code != want || a.block1 != blockOption(t, blockwise.SZX64, blk.num, blk.more) {
				t.Fatalf("%s, block %d: answered %v with Block1 %#x, want %v with the block's", tokens, blk.num, a.code, a.block1, want)
			}
		}
		if n := next(t, notes); !bytes.Equal(n.body, payload) {
			t.Fatalf("%s: the observer got %d bytes, want the 150 uploaded", tokens, len(n.body))
		}
	}

	tok := token(t)
	putBlock(t, conn, "/ps/up", tok, blockOption(t, blockwise.SZX64, 0, true), payload[:64], 0)
	if a := putBlock(t, conn, "/ps/up", tok, blockOption(t, blockwise.SZX64, 2, false), payload[128:], 0); a.code != codes.RequestEntityIncomplete {
		t.Errorf("block 2 after block 0: %v, want 4.08", a.code)
	}
	if a := putBlock(t, conn, "/ps/up", token(t), blockOption(t, blockwise.SZX64, 0, true), payload[:10], 0); a.code != codes.BadRequest {
		t.Errorf("a first block of 10 bytes of 64: %v, want 4.00", a.code)
	}
	if a := putBlock(t, conn, "/ps/up", token(t), blockOption(t, blockwise.SZX64, 0, true), payload[:64], 5000); a.code != codes.RequestEntityTooLarge || a.size1 != 1000 {
		t.Errorf("announcing 5000 bytes to a broker taking 1000: %v with Size1 %d, want 4.13 with Size1 1000", a.code, a.size1)
	}
	if a := putBlock(t, conn, "/ps/up", token(t), blockOption(t, blockwise.SZX64, 16, false), payload[:10], 0); a.code != codes.RequestEntityTooLarge {
		t.Errorf("a block at byte 1024 of a broker taking 1000: %v, want 4.13", a.code)
	}
	select {
	case n := <-notes:
		t.Errorf("a refused upload was published: %d bytes", len(n.body))
	case <-time.After(200 * time.Millisecond):
	}
}

// TestBlock1SmallerBlocks: a broker with smaller blocks answers the first
// block with its size; the client goes on at that size from where it was,
// and the whole payload is published. A go-coap client with its own
// block-wise layer gets the notification in the broker's blocks.
func TestBlock1SmallerBlocks(t *testing.T) {
	b, conn := startRaw(t, broker.Options{BlockSize: 64})
	app, err := udp.Dial(b.Addr().String(), options.WithBlockwise(true, blockwise.SZX1024, 10*time.Second), options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	notes, _ := observe(t, app, "/ps/small")
	next(t, notes)

	payload := random(1034)
	tok := token(t)
	if a := putBlock(t, conn, "/ps/small", tok, blockOption(t, blockwise.SZX1024, 0, true), payload[:1024], 0); a.code != codes.Continue || a.block1 != blockOption(t, blockwise.SZX64, 0, true) {
		t.Fatalf("first block of 1024 bytes: %v with Block1 %#x, want 2.31 asking for 64-byte blocks", a.code, a.block1)
	}
	if a := putBlock(t, conn, "/ps/small", tok, blockOption(t, blockwise.SZX64, 16, false), payload[1024:], 0); a.code != codes.Changed {
		t.Fatalf("last block at 64 bytes: %v, want 2.04", a.code)
	}
	if n := next(t, notes); !bytes.Equal(n.body, payload) {
		t.Fatalf("the observer got %d bytes, want the 1034 uploaded", len(n.body))
	}
}

// TestBlock2Serving: a notification too large for one datagram carries its
// first block, Size2 and ETag; the observer GETs the other blocks, at the
// same or a smaller size, each with the same ETag; a block past the end is
// refused; once the last block was fetched, the next notification comes.
func TestBlock2Serving(t *testing.T) {
	b, conn := startRaw(t, broker.Options{})
	notes, _ := observe(t, conn, "/ps/big")
	next(t, notes)
	payload := random(3000)
	pub := dialRaw(t, b)
	publishWhole(t, pub, "/ps/big", payload) // one 3000-byte datagram: accepted

	first := next(t, notes)
	if first.block2 != blockOption(t, blockwise.SZX1024, 0, true) || first.size2 != 3000 || !bytes.Equal(first.body, payload[:1024]) || len(first.etag) == 0 {
		t.Fatalf("notification with Block2 %#x, Size2 %d, %d bytes, ETag %x; want the first block of 1024, Size2 3000 and an ETag", first.block2, first.size2, len(first.body), first.etag)
	}
	for _, c := range []struct {
		ask, want uint32
		code      codes.Code
		from, to  int
	}{
		{blockOption(t, blockwise.SZX1024, 1, false), blockOption(t, blockwise.SZX1024, 1, true), codes.Content, 1024, 2048},
		{blockOption(t, blockwise.SZX1024, 3, false), 0, codes.BadOption, 0, 0},
		{blockOption(t, blockwise.SZX512, 4, false), blockOption(t, blockwise.SZX512, 4, true), codes.Content, 2048, 2560},
		{blockOption(t, blockwise.SZX512, 5, false), blockOption(t, blockwise.SZX512, 5, false), codes.Content, 2560, 3000},
	} {
		resp, err := conn.Get(ctx(t), "/ps/big", message.Option{ID: message.Block2, Value: uint32Bytes(c.ask)})
		if err != nil {
			t.Fatal(err)
		}
		block2, _ := resp.GetOptionUint32(message.Block2)
		etag, _ := resp.ETag()
		body, _ := resp.ReadBody()
		code := resp.Code()
		okETag := bytes.Equal(etag, first.etag)
		conn.ReleaseMessage(resp)
		if code != c.code {
			t.Fatalf("GET with Block2 %#x: %v, want %v", c.ask, code, c.code)
		}
		if code == codes.Content && (block2 != c.want || !bytes.Equal(body, payload[c.from:c.to]) || !okETag) {
			t.Fatalf("GET with Block2 %#x: Block2 %#x, %d bytes, ETag kept %v; want Block2 %#x and bytes %d to %d", c.ask, block2, len(body), okETag, c.want, c.from, c.to)
		}
	}
	publishWhole(t, pub, "/ps/big", []byte("next"))
	if n := next(t, notes); string(n.body) != "next" || n.block2 != 0 {
		t.Errorf("after the last block: %q with Block2 %#x, want \"next\" whole", n.body, n.block2)
	}
}

// TestBlock2EarlyNegotiation: an observer that registers with a small
// Block2 gets its notifications in blocks of that size.
func TestBlock2EarlyNegotiation(t *testing.T) {
	b, conn := startRaw(t, broker.Options{})
	notes, _ := observe(t, conn, "/ps/tiny", message.Option{ID: message.Block2, Value: uint32Bytes(blockOption(t, blockwise.SZX64, 0, false))})
	next(t, notes)
	payload := random(100)
	publishWhole(t, dialRaw(t, b), "/ps/tiny", payload)
	if n := next(t, notes); n.block2 != blockOption(t, blockwise.SZX64, 0, true) || !bytes.Equal(n.body, payload[:64]) {
		t.Errorf("notification with Block2 %#x and %d bytes, want the first 64-byte block", n.block2, len(n.body))
	}
}

// publishWhole PUTs payload in one datagram and expects 2.04.
func publishWhole(t *testing.T, conn *udpclient.Conn, path string, payload []byte) {
	t.Helper()
	resp, err := conn.Put(ctx(t), path, message.AppOctets, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.ReleaseMessage(resp)
	if resp.Code() != codes.Changed {
		t.Fatalf("PUT of %d bytes: %v, want 2.04", len(payload), resp.Code())
	}
}

func uint32Bytes(v uint32) []byte {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, v)
	return buf[:n]
}
