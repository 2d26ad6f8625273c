// Package broker is a small CoAP publish/subscribe broker on go-coap v3,
// in the spirit of the IETF CoAP pub/sub draft (draft-ietf-core-coap-pubsub),
// built to carry E4-protected messages between CoAP devices.
//
// # Resources
//
// A topic is a resource under a path prefix ("/ps" by default): topic
// "home/kitchen/temp" is /ps/home/kitchen/temp, one Uri-Path option per
// level (see package topicpath: levels are carried byte for byte, no
// escaping). There is nothing to create first:
//
//   - PUT or POST publishes the request body to the topic (2.04 Changed);
//     a large body may come block-wise (Block1, RFC 7959).
//   - GET with Observe: 0 subscribes. The registration is answered at once
//     with 2.05 Content, an Observe option and an empty body, even if nothing
//     was ever published on the topic (the broker keeps no messages, so a
//     topic never "does not exist": no 4.04). Each later publication is one
//     notification: 2.05 Content, the message as body, an ETag naming the
//     publication. The path may be a filter: "+" matches one level and "#",
//     last, any number of levels; notifications of such an observation carry
//     the concrete topic as Location-Path options.
//   - GET with Observe: 1 ends an observation. (A Reset does not: go-coap
//     reports it to the broker as an acknowledgement. Clients that vanish
//     are caught by the keepalive described below.)
//   - A plain GET answers 2.05 with an empty body (there is no stored value);
//     a GET carrying Block2 fetches the rest of a block-wise notification.
//
// # Delivery
//
// Every observation has its own queue, so a burst of publications reaches
// every observer completely and in order: a notification is confirmable,
// and the next one is sent only once it was acknowledged (and, for a large
// one, once its last block was fetched). A slow observer only delays
// itself; when its queue exceeds Options.QueueLimit the oldest message is
// dropped.
//
// A client endpoint gets at most 65,000 notifications per EXCHANGE_LIFETIME
// (247 s), bursts at full speed: a CoAP Message ID may not be reused
// sooner (RFC 7252 §4.4), and a client would drop a notification carrying
// one it still remembers as a retransmission. Past that budget,
// notifications wait in the observer's queue.
//
// A notification travels in one datagram when the whole CoAP message fits
// in Options.MaxDatagramSize (1152 bytes by default, RFC 7252 §4.6: a
// 1 KiB message with E4's 24 bytes fits). Larger ones go block-wise (RFC
// 7959): the first block travels in the notification and the observer
// fetches the others with GET + Block2. Those GETs carry neither the
// observation's token nor its ETag, so the broker serves them from a
// snapshot of the one notification of that observer in transfer, and
// never starts a second block-wise transfer on the same connection and
// path before the first ends: blocks of two messages cannot mix. An
// observer that registers with a Block2 option smaller than the broker's
// block size (early negotiation) gets its notifications in blocks of that
// size.
//
// go-coap's own block-wise layer is off: it would split every body over
// 1024 bytes, however small the datagram, and it is on or off for a whole
// connection. The broker receives Block1 uploads and serves Block2 blocks
// itself.
//
// # Life of an observation
//
// An observation ends when the client deregisters, when a notification is
// not acknowledged after CoAP's retransmissions, when the client stops
// answering keepalive pings (Options.IdleTimeout; go-coap's own default
// would drop every UDP session idle for 16 s, observers included), or when
// the broker closes: Close sends each observer a final 5.03 Service
// Unavailable without Observe, which tells clients to observe again.
package broker

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport/coap/internal/datagram"
	"github.com/e4-iot/e4kit/transport/coap/internal/msgid"
	"github.com/e4-iot/e4kit/transport/coap/internal/topicpath"
)

// Defaults of Options.
const (
	DefaultPrefix    = "/ps"
	DefaultBlockSize = 1024
	// DefaultMaxDatagramSize bounds a CoAP message when the path MTU is
	// unknown (RFC 7252 §4.6); libcoap refuses larger datagrams.
	DefaultMaxDatagramSize = datagram.DefaultMaxSize
	DefaultMaxPayload      = 1 << 20
	DefaultQueueLimit      = 10000
	DefaultIdleTimeout     = 60 * time.Second
	DefaultTransferTimeout = 30 * time.Second
)

// Options configures a Broker. The zero value is usable.
type Options struct {
	// Prefix is the path under which topics live; default "/ps". "/"
	// puts topics at the root.
	Prefix string

	// BlockSize is the block size of block-wise transfers: a power of two
	// from 16 to 1024; default 1024.
	BlockSize int

	// MaxDatagramSize bounds the notifications (header, token, options and
	// payload) sent in one datagram: a message that would make a larger
	// one goes block-wise, unless it fits in one block anyway. Default
	// DefaultMaxDatagramSize; with BlockSize below 1024, or negative,
	// none: every message over one block goes block-wise. At most 64512.
	// Publications are accepted in one datagram of any size up to
	// MaxPayload.
	MaxDatagramSize int

	// MaxPayload is the largest message the broker accepts; default 1 MiB.
	MaxPayload int

	// QueueLimit is how many messages may wait for one observer; when a
	// publication finds the queue full, the oldest waiting message is
	// dropped. Default 10000.
	QueueLimit int

	// IdleTimeout is how long a connection may stay silent before the
	// broker pings it; a peer that answers none of three pings is
	// dropped with its observations. Default 60 s.
	IdleTimeout time.Duration

	// TransferTimeout bounds a block-wise notification: if the observer has
	// not fetched the last block by then, the broker goes on with its next
	// message. It also bounds the wait between two blocks of an upload.
	// Default 30 s.
	TransferTimeout time.Duration

	// DTLS, when set, makes the broker speak CoAP over DTLS only.
	DTLS *DTLSConfig

	// Logf receives diagnostics; nil discards them. Payloads and keys are
	// never logged.
	Logf func(format string, args ...any)

	// OnPublish, if set, sees every publication before it is queued, as
	// the broker carries it (with E4: ciphertext). It must not block nor
	// keep payload.
	OnPublish func(topic string, payload []byte)
}

// DTLSConfig selects how DTLS clients authenticate: with a pre-shared key
// (PSK set) or with certificates (Certificates set).
type DTLSConfig struct {
	// PSK returns the key of the client identity it is given.
	PSK func(identity []byte) ([]byte, error)
	// PSKIdentityHint is sent to clients during a PSK handshake.
	PSKIdentityHint []byte

	// Certificates are the broker's certificate chains.
	Certificates []tls.Certificate
	// ClientCAs, when set, makes client certificates mandatory and
	// verifies them against these roots.
	ClientCAs *x509.CertPool
}

// Broker is a running CoAP pub/sub broker.
type Broker struct {
	opts   Options
	prefix []string
	szx    blockwise.SZX
	// maxDatagram bounds a notification sent whole (0: one block of payload).
	maxDatagram int
	addr        net.Addr
	stop        func()
	served      chan struct{}

	instance [4]byte // random per start: ETags of two runs differ
	// idWindow and idLimit size each connection's msgid.Budget.
	idWindow time.Duration
	idLimit  int
	counter  atomic.Uint64 // publications so far, for ETags

	mu       sync.Mutex
	closed   bool
	conns    map[*udpclient.Conn]*connState
	exact    map[string]map[*observer]struct{} // concrete topic → observers
	wildcard map[*observer]struct{}
}

// connState is what the broker knows about one client endpoint.
type connState struct {
	observers map[string]*observer // by token
	transfers map[string]*transfer // by observed path: block-wise notification in progress
	finished  []string             // tokens of the block requests of ended transfers
	uploads   map[string]*upload   // by token: block-wise publications being received
	// ids counts the Message IDs of the notifications sent to the
	// endpoint: past CoAP's limit, a client would take a new notification
	// for a copy of an old one and drop it (see package msgid).
	ids *msgid.Budget
}

func newConnState(ids *msgid.Budget) *connState {
	return &connState{
		ids:       ids,
		observers: make(map[string]*observer),
		transfers: make(map[string]*transfer),
		uploads:   make(map[string]*upload),
	}
}

// Start listens on addr ("host:port", UDP) and serves until Close.
func Start(addr string, opts *Options) (*Broker, error) {
	b, err := newBroker(opts)
	if err != nil {
		return nil, err
	}
	if b.opts.DTLS != nil {
		err = b.listenDTLS(addr)
	} else {
		err = b.listenUDP(addr)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func newBroker(opts *Options) (*Broker, error) {
	b := &Broker{
		served:   make(chan struct{}),
		conns:    make(map[*udpclient.Conn]*connState),
		exact:    make(map[string]map[*observer]struct{}),
		wildcard: make(map[*observer]struct{}),
		idWindow: msgid.ExchangeLifetime,
		idLimit:  msgid.Limit,
	}
	if opts != nil {
		b.opts = *opts
	}
	o := &b.opts
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	b.prefix = topicpath.ParsePrefix(o.Prefix)
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	szx, err := blockSZX(o.BlockSize)
	if err != nil {
		return nil, err
	}
	b.szx = szx
	if b.maxDatagram, err = datagram.Resolve(o.MaxDatagramSize, szx); err != nil {
		return nil, fmt.Errorf("broker: MaxDatagramSize: %w", err)
	}
	setDefault(&o.MaxPayload, DefaultMaxPayload)
	setDefault(&o.QueueLimit, DefaultQueueLimit)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.TransferTimeout, DefaultTransferTimeout)
	_, _ = rand.Read(b.instance[:]) // crypto/rand.Read never fails
	return b, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// blockSZX converts a block size to go-coap's SZX.
func blockSZX(size int) (blockwise.SZX, error) {
	for szx := blockwise.SZX16; szx <= blockwise.SZX1024; szx++ {
		if int(szx.Size()) == size {
			return szx, nil
		}
	}
	return 0, fmt.Errorf("broker: block size %d is not a power of two from 16 to 1024", size)
}

func (b *Broker) listenUDP(addr string) error {
	l, err := coapnet.NewListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("broker: listening on %s: %w", addr, err)
	}
	srv := udp.NewServer(serverConfig{b})
	b.addr = l.LocalAddr()
	b.stop = func() {
		srv.Stop()
		_ = l.Close()
	}
	go func() {
		defer close(b.served)
		if err := srv.Serve(l); err != nil && !b.isClosed() {
			b.logf("broker: serving: %v", err)
		}
	}()
	return nil
}

func (b *Broker) listenDTLS(addr string) error {
	cfg, err := b.dtlsServerOptions()
	if err != nil {
		return err
	}
	l, err := coapnet.NewDTLSListener("udp", addr, cfg)
	if err != nil {
		return fmt.Errorf("broker: listening with DTLS on %s: %w", addr, err)
	}
	srv := dtls.NewServer(serverConfig{b})
	b.addr = l.Addr()
	b.stop = func() {
		srv.Stop()
		_ = l.Close()
	}
	go func() {
		defer close(b.served)
		if err := srv.Serve(l); err != nil && !b.isClosed() {
			b.logf("broker: serving DTLS: %v", err)
		}
	}()
	return nil
}

// dtlsServerOptions turns DTLSConfig into pion options.
func (b *Broker) dtlsServerOptions() (coapnet.DTLSServerOptions, error) {
	d := b.opts.DTLS
	var opts []piondtls.ServerOption
	switch {
	case d.PSK != nil && len(d.Certificates) > 0:
		return coapnet.DTLSServerOptions{}, errors.New("broker: DTLS takes a PSK or certificates, not both")
	case d.PSK != nil:
		opts = append(opts,
			piondtls.WithPSK(d.PSK),
			piondtls.WithPSKIdentityHint(d.PSKIdentityHint),
			// CCM_8 is the suite RFC 7252 mandates for CoAP PSK mode.
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256))
	case len(d.Certificates) > 0:
		opts = append(opts, piondtls.WithCertificates(d.Certificates...))
		if d.ClientCAs != nil {
			opts = append(opts, piondtls.WithClientCAs(d.ClientCAs),
				piondtls.WithClientAuth(piondtls.RequireAndVerifyClientCert))
		}
	default:
		return coapnet.DTLSServerOptions{}, errors.New("broker: DTLS needs a PSK or certificates")
	}
	opts = append(opts, piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret))
	return coapnet.NewDTLSServerOptions(opts...), nil
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() net.Addr { return b.addr }

// Close tells every observer that its observation ends (5.03 Service
// Unavailable), stops serving and releases the port. It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var all []*observer
	for _, cs := range b.conns {
		for _, o := range cs.observers {
			all = append(all, o)
		}
	}
	b.mu.Unlock()
	for _, o := range all {
		o.stop()
	}
	for _, o := range all {
		o.sendGoodbye()
	}
	b.stop()
	<-b.served
	return nil
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *Broker) logf(format string, args ...any) {
	if b.opts.Logf != nil {
		b.opts.Logf(format, args...)
	}
}

// publication is one message being delivered.
type publication struct {
	topic   string
	payload []byte
	etag    [8]byte
}

// publish queues payload for every observer whose path matches topic. The
// lock makes the queues of all observers agree on the order of messages.
func (b *Broker) publish(topic string, payload []byte) {
	if b.opts.OnPublish != nil {
		b.opts.OnPublish(topic, payload)
	}
	p := &publication{topic: topic, payload: payload}
	copy(p.etag[:4], b.instance[:])
	binary.BigEndian.PutUint32(p.etag[4:], uint32(b.counter.Add(1)))

	b.mu.Lock()
	defer b.mu.Unlock()
	for o := range b.exact[topic] {
		o.enqueue(p)
	}
	for o := range b.wildcard {
		if o.matches(topic) {
			o.enqueue(p)
		}
	}
}

// addObserver registers an observation of path by (cc, token). A
// registration with the token of a live observation replaces it (RFC 7641
// re-registration) and continues its sequence numbers.
func (b *Broker) addObserver(cc *udpclient.Conn, token []byte, path string, wildcard bool, szx blockwise.SZX) (*observer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("broker: closed")
	}
	cs := b.conns[cc]
	if cs == nil {
		return nil, errors.New("broker: connection gone")
	}
	o := newObserver(b, cc, cs.ids, token, path, wildcard, szx)
	if old := cs.observers[string(token)]; old != nil {
		o.seq = old.seq
		b.unlinkLocked(old)
		old.stop()
	}
	cs.observers[string(token)] = o
	if wildcard {
		b.wildcard[o] = struct{}{}
	} else {
		set := b.exact[path]
		if set == nil {
			set = make(map[*observer]struct{})
			b.exact[path] = set
		}
		set[o] = struct{}{}
	}
	return o, nil
}

// removeObserver ends the observation of (cc, token), if any.
func (b *Broker) removeObserver(cc *udpclient.Conn, token []byte) {
	b.mu.Lock()
	o := b.conns[cc].lookup(token)
	if o != nil {
		b.unlinkLocked(o)
	}
	b.mu.Unlock()
	if o != nil {
		o.stop()
	}
}

// drop ends one observation after a delivery failure.
func (b *Broker) drop(o *observer) {
	b.mu.Lock()
	b.unlinkLocked(o)
	b.mu.Unlock()
	o.stop()
}

// dropConn ends every observation of a closed connection.
func (b *Broker) dropConn(cc *udpclient.Conn) {
	b.mu.Lock()
	cs := b.conns[cc]
	delete(b.conns, cc)
	var gone []*observer
	if cs != nil {
		for _, o := range cs.observers {
			gone = append(gone, o)
			b.unlinkLocked(o)
		}
	}
	b.mu.Unlock()
	for _, o := range gone {
		o.stop()
	}
}

func (cs *connState) lookup(token []byte) *observer {
	if cs == nil {
		return nil
	}
	return cs.observers[string(token)]
}

// unlinkLocked removes o from every index; b.mu is held.
func (b *Broker) unlinkLocked(o *observer) {
	if cs := b.conns[o.cc]; cs != nil && cs.observers[string(o.token)] == o {
		delete(cs.observers, string(o.token))
	}
	delete(b.wildcard, o)
	if set := b.exact[o.path]; set != nil {
		delete(set, o)
		if len(set) == 0 {
			delete(b.exact, o.path)
		}
	}
}

// Observers returns the number of live observations.
func (b *Broker) Observers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, cs := range b.conns {
		n += len(cs.observers)
	}
	return n
}
