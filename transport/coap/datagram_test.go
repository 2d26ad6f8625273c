package coap_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// datagram is one CoAP message a datagramProxy relayed.
type datagram struct {
	toServer bool
	typ      message.Type
	mid      int32
	code     codes.Code
	observe  bool // has an Observe option: a notification or a registration
	block1   bool
	block2   bool
	payload  int
	size     int // of the whole datagram
}

// datagramProxy relays UDP datagrams between one client and a CoAP server
// and decodes each, so that a test sees how messages travel: in one
// datagram or block-wise.
type datagramProxy struct {
	listener *net.UDPConn // where the client sends
	upstream *net.UDPConn // connected to the server
	wg       sync.WaitGroup

	mu     sync.Mutex
	client *net.UDPAddr
	seen   []datagram
}

// startProxy relays to server until the test ends; clients dial Addr.
func startProxy(t testing.TB, server string) *datagramProxy {
	t.Helper()
	serverAddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	p := &datagramProxy{}
	if p.listener, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if p.upstream, err = net.DialUDP("udp", nil, serverAddr); err != nil {
		_ = p.listener.Close()
		t.Fatal(err)
	}
	p.wg.Go(p.toServer)
	p.wg.Go(p.toClient)
	t.Cleanup(func() {
		_ = p.listener.Close()
		_ = p.upstream.Close()
		p.wg.Wait()
	})
	return p
}

// Addr is where clients send.
func (p *datagramProxy) Addr() string { return p.listener.LocalAddr().String() }

func (p *datagramProxy) toServer() {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := p.listener.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.client = from
		p.mu.Unlock()
		p.record(true, buf[:n])
		_, _ = p.upstream.Write(buf[:n])
	}
}

func (p *datagramProxy) toClient() {
	buf := make([]byte, 1<<16)
	for {
		n, err := p.upstream.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		p.mu.Lock()
		client := p.client
		p.mu.Unlock()
		if err != nil || client == nil {
			continue // an ICMP error, or nothing to answer yet
		}
		p.record(false, buf[:n])
		_, _ = p.listener.WriteToUDP(buf[:n], client)
	}
}

func (p *datagramProxy) record(toServer bool, data []byte) {
	m := message.Message{Options: make(message.Options, 0, 64)}
	if _, err := coder.DefaultCoder.Decode(data, &m); err != nil {
		return
	}
	d := datagram{
		toServer: toServer, typ: m.Type, mid: m.MessageID, code: m.Code,
		observe: m.Options.HasOption(message.Observe),
		block1:  m.Options.HasOption(message.Block1),
		block2:  m.Options.HasOption(message.Block2),
		payload: len(m.Payload),
		size:    len(data),
	}
	p.mu.Lock()
	p.seen = append(p.seen, d)
	p.mu.Unlock()
}

// take returns what the proxy relayed since the last call, without the
// retransmissions (same direction, type and message ID).
func (p *datagramProxy) take() []datagram {
	p.mu.Lock()
	defer p.mu.Unlock()
	type key struct {
		toServer bool
		typ      message.Type
		mid      int32
	}
	var out []datagram
	dup := make(map[key]bool)
	for _, d := range p.seen {
		k := key{d.toServer, d.typ, d.mid}
		if !dup[k] {
			dup[k] = true
			out = append(out, d)
		}
	}
	p.seen = nil
	return out
}

// publications returns the PUTs among ds.
func publications(ds []datagram) []datagram {
	var out []datagram
	for _, d := range ds {
		if d.toServer && d.code == codes.PUT {
			out = append(out, d)
		}
	}
	return out
}

// notifications returns the 2.05 Content the server sent with Observe,
// and the block GETs the client sent.
func notifications(ds []datagram) (notes, blockGets []datagram) {
	for _, d := range ds {
		switch {
		case !d.toServer && d.code == codes.Content && d.observe:
			notes = append(notes, d)
		case d.toServer && d.code == codes.GET && d.block2:
			blockGets = append(blockGets, d)
		}
	}
	return notes, blockGets
}

// maxDatagram is the default bound on a whole CoAP message.
const maxDatagram = coap.DefaultMaxDatagramSize

// checkPublication checks how a size-byte payload went from the
// publisher: one PUT without Block1 if single, else one Block1 PUT per
// block of 1024 bytes.
func checkPublication(t *testing.T, ds []datagram, size int, single bool) {
	t.Helper()
	puts := publications(ds)
	if single {
		if len(puts) != 1 || puts[0].block1 || puts[0].payload != size {
			t.Errorf("%d-byte payload: PUTs %+v, want one datagram without Block1", size, puts)
		}
		return
	}
	total := 0
	for _, put := range puts {
		total += put.payload
		if !put.block1 {
			t.Errorf("%d-byte payload: a PUT without Block1 (%+v)", size, put)
		}
	}
	if want := (size + 1023) / 1024; len(puts) != want || total != size {
		t.Errorf("%d-byte payload: %d PUTs carrying %d bytes, want %d blocks", size, len(puts), total, want)
	}
}

// checkNotification checks how a size-byte payload reached the observer:
// one notification without Block2 if single, else a first block of 1024
// bytes and GETs of the others.
func checkNotification(t *testing.T, ds []datagram, size int, single bool) {
	t.Helper()
	notes, gets := notifications(ds)
	if len(notes) != 1 {
		t.Errorf("%d-byte payload: %d notifications (%+v), want 1", size, len(notes), notes)
		return
	}
	if single {
		if notes[0].block2 || notes[0].payload != size || len(gets) != 0 {
			t.Errorf("%d-byte payload: notification %+v and %d block GETs, want one datagram without Block2", size, notes[0], len(gets))
		}
		return
	}
	if want := (size+1023)/1024 - 1; !notes[0].block2 || notes[0].payload != 1024 || len(gets) != want {
		t.Errorf("%d-byte payload: notification %+v and %d block GETs, want a first block and %d GETs", size, notes[0], len(gets), want)
	}
}

// checkDatagramSizes checks that no datagram is over limit bytes.
func checkDatagramSizes(t *testing.T, ds []datagram, limit int) {
	t.Helper()
	for _, d := range ds {
		if d.size > limit {
			t.Errorf("a %d-byte datagram, over %d: %+v", d.size, limit, d)
		}
	}
}

// overhead returns how many bytes of header, token and options the first
// datagram with a payload in ds carries: whether another payload fits in
// one datagram depends on them.
func overhead(t *testing.T, ds []datagram) int {
	t.Helper()
	if len(ds) == 0 {
		t.Fatal("no datagram")
	}
	return ds[0].size - 1 - ds[0].payload // 1: the payload marker
}

// relay publishes payloads of each size from pub to sub through their
// proxies, checks that each arrives intact, and returns what each proxy
// relayed for it.
func relay(t *testing.T, pub transport.Transport, sub transport.Subscription, topic string, pubProxy, subProxy *datagramProxy, sizes []int) (sent, received [][]datagram) {
	t.Helper()
	for _, size := range sizes {
		pubProxy.take()
		subProxy.take()
		payload := make([]byte, size)
		_, _ = rand.Read(payload)
		publish(t, pub, topic, payload)
		if m := receive(t, sub); !bytes.Equal(m.Payload, payload) {
			t.Fatalf("sent %d bytes, received %d (or different)", size, len(m.Payload))
		}
		sent = append(sent, pubProxy.take())
		received = append(received, subProxy.take())
	}
	return sent, received
}

// TestSingleDatagram: through our broker, a payload goes from the
// publisher and to the observer in one datagram each when the whole CoAP
// message fits in 1152 bytes (RFC 7252 §4.6; a 1 KiB message with E4's 24
// bytes, 1048, fits), else block-wise; all arrive intact. The boundary is
// found from the header and options the datagrams carry.
func TestSingleDatagram(t *testing.T) {
	b := startBroker(t, nil)
	pubProxy, subProxy := startProxy(t, b.addr), startProxy(t, b.addr)
	pub := dial(t, testConfig(pubProxy.Addr()))
	sub := subscribe(t, dial(t, testConfig(subProxy.Addr())), "datagrams")
	sent, received := relay(t, pub, sub, "datagrams", pubProxy, subProxy, []int{1024})
	putOverhead := overhead(t, publications(sent[0]))
	notes, _ := notifications(received[0])
	noteOverhead := overhead(t, notes)
	largest := maxDatagram - 1 - putOverhead // the largest payload a PUT carries whole
	sizes := []int{1048, largest, largest + 1, 1153, 5000, 64 << 10}
	sent, received = relay(t, pub, sub, "datagrams", pubProxy, subProxy, sizes)
	for i, size := range sizes {
		checkPublication(t, sent[i], size, 1+putOverhead+size <= maxDatagram)
		checkNotification(t, received[i], size, 1+noteOverhead+size <= maxDatagram)
		checkDatagramSizes(t, append(sent[i], received[i]...), maxDatagram)
	}
}

// TestSingleDatagramE4: a 1 KiB message protected by E4 (1048 bytes on the
// wire) crosses the broker in one datagram each way.
func TestSingleDatagramE4(t *testing.T) {
	b := startBroker(t, nil)
	topic := "devices/thermostat-42/temperature"
	key := make([]byte, e4.KeyLen)
	_, _ = rand.Read(key)
	pubProxy, subProxy := startProxy(t, b.addr), startProxy(t, b.addr)
	pub := protect(t, dial(t, testConfig(pubProxy.Addr())), newE4Client(t, topic, key))
	sub := subscribe(t, protect(t, dial(t, testConfig(subProxy.Addr())), newE4Client(t, topic, key)), topic)
	pubProxy.take()
	subProxy.take()
	plain := make([]byte, 1024)
	_, _ = rand.Read(plain)
	publish(t, pub, topic, plain)
	if m := receive(t, sub); !bytes.Equal(m.Payload, plain) {
		t.Fatalf("decrypted %d bytes, want the 1024 sent", len(m.Payload))
	}
	wire := 1024 + e4.SKOverhead
	checkPublication(t, pubProxy.take(), wire, true)
	checkNotification(t, subProxy.take(), wire, true)
}

// protect adds E4 to tr; the result closes with the test. It sends no
// sync request, whose datagram the tests would count with the message's.
func protect(t *testing.T, tr transport.Transport, c *e4.Client) *e4transport.Protected {
	t.Helper()
	p, err := e4transport.Protect(opContext(t), tr, c, &e4transport.Options{NoSync: true})
	if err != nil {
		t.Fatalf("protecting: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestSingleDatagramLibcoap: libcoap's server (which resets datagrams over
// 1152 bytes) takes a publication in one datagram when it fits, else
// block-wise (our Block1), and the observer gets each intact, in whatever
// blocks libcoap sends (our Block2 fetching): a 1048-byte message in one
// datagram.
func TestSingleDatagramLibcoap(t *testing.T) {
	server := testbroker.StartLibcoap(t)
	pubProxy, subProxy := startProxy(t, server.Addr()), startProxy(t, server.Addr())
	pub := dial(t, libcoapConfig(pubProxy.Addr()))
	topic := "interop/datagrams"
	publish(t, pub, topic, []byte("created"))
	sub := subscribe(t, dial(t, libcoapConfig(subProxy.Addr())), topic)
	sent, _ := relay(t, pub, sub, topic, pubProxy, subProxy, []int{1024})
	putOverhead := overhead(t, publications(sent[0]))
	largest := maxDatagram - 1 - putOverhead
	sizes := []int{1048, largest, largest + 1, 1153, 5000, 64 << 10}
	sent, received := relay(t, pub, sub, topic, pubProxy, subProxy, sizes)
	for i, size := range sizes {
		checkPublication(t, sent[i], size, 1+putOverhead+size <= maxDatagram)
		checkDatagramSizes(t, append(sent[i], received[i]...), maxDatagram)
		notes, gets := notifications(received[i])
		t.Logf("%d bytes: libcoap notified with %+v and %d block GETs", size, notes, len(gets))
	}
	checkNotification(t, received[0], 1048, true)
}

// TestMaxDatagramSize: the bound is configurable on both sides: at 1400
// bytes a 1152-byte payload travels whole; negative, any payload over a
// block goes block-wise; and bad values are refused.
func TestMaxDatagramSize(t *testing.T) {
	b := startBroker(t, &broker.Options{MaxDatagramSize: 1400})
	pubProxy, subProxy := startProxy(t, b.addr), startProxy(t, b.addr)
	cfg := testConfig(pubProxy.Addr())
	cfg.MaxDatagramSize = 1400
	sub := subscribe(t, dial(t, testConfig(subProxy.Addr())), "limit")
	sent, received := relay(t, dial(t, cfg), sub, "limit", pubProxy, subProxy, []int{1152})
	checkPublication(t, sent[0], 1152, true)
	checkNotification(t, received[0], 1152, true)

	cfg.MaxDatagramSize = -1
	sent, _ = relay(t, dial(t, cfg), sub, "limit", pubProxy, subProxy, []int{1025})
	checkPublication(t, sent[0], 1025, false)

	cfg = testConfig(b.addr)
	cfg.MaxDatagramSize = 1 << 16
	if tr, err := coap.Dial(opContext(t), cfg); err == nil {
		_ = tr.Close()
		t.Error("Dial with MaxDatagramSize 65536 succeeded")
	}
	if b, err := broker.Start("127.0.0.1:0", &broker.Options{MaxDatagramSize: 1 << 16}); err == nil {
		_ = b.Close()
		t.Error("broker.Start with MaxDatagramSize 65536 succeeded")
	}
}

// TestSmallBlocksSmallDatagrams: a client with small blocks keeps every
// payload within one block, both ways: its registration asks our broker
// for such blocks.
func TestSmallBlocksSmallDatagrams(t *testing.T) {
	b := startBroker(t, nil)
	proxy := startProxy(t, b.addr)
	cfg := testConfig(proxy.Addr())
	cfg.BlockSize = 256
	tr := dial(t, cfg)
	sub := subscribe(t, tr, "small")
	payload := make([]byte, 1000)
	_, _ = rand.Read(payload)
	proxy.take()
	publish(t, tr, "small", payload)
	if m := receive(t, sub); !bytes.Equal(m.Payload, payload) {
		t.Fatalf("received %d bytes (or different), want the 1000 sent", len(m.Payload))
	}
	for _, d := range proxy.take() {
		if d.payload > 256 {
			t.Errorf("a datagram carried %d bytes: %+v", d.payload, d)
		}
	}
}
