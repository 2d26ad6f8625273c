package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	dtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/internal/msgid"
	"github.com/e4-iot/e4kit/transport/coap/internal/topicpath"
)

type responseWriter = responsewriter.ResponseWriter[*udpclient.Conn]

// Observe option values of a GET (RFC 7641 §2).
const (
	observeRegister   = 0
	observeDeregister = 1
)

// keepAliveRetries is how many unanswered pings end a connection.
const keepAliveRetries = 3

// periodicInterval is how often go-coap checks retransmissions and
// inactivity (its default, 4 s, makes retransmissions late).
const periodicInterval = time.Second

// handle serves one request.
func (b *Broker) handle(w *responseWriter, r *pool.Message) {
	path, ok := topicpath.Topic(message.URIPath, b.prefix, r.Options())
	if !ok {
		b.respond(w, codes.NotFound, "no topic at this path")
		return
	}
	switch r.Code() {
	case codes.PUT, codes.POST:
		b.handlePublish(w, r, path)
	case codes.GET:
		b.handleGet(w, r, path)
	default:
		b.respond(w, codes.MethodNotAllowed, "PUT or POST publishes, GET observes")
	}
}

func (b *Broker) handlePublish(w *responseWriter, r *pool.Message, topic string) {
	if err := transport.ValidateTopic(topic); err != nil {
		b.respond(w, codes.BadRequest, "cannot publish on a filter")
		return
	}
	if r.HasOption(message.Block1) {
		b.receiveBlock(w, r, topic)
		return
	}
	if size, err := r.BodySize(); err == nil && size > int64(b.opts.MaxPayload) {
		b.refuseTooLarge(w)
		return
	}
	payload, err := r.ReadBody()
	if err != nil {
		b.respond(w, codes.BadRequest, "unreadable body")
		return
	}
	b.publish(topic, bytes.Clone(payload))
	b.respond(w, codes.Changed, "")
}

func (b *Broker) handleGet(w *responseWriter, r *pool.Message, path string) {
	obs, err := r.Observe()
	switch {
	case err == nil && obs == observeRegister:
		b.handleRegister(w, r, path)
	case err == nil && obs == observeDeregister:
		b.removeObserver(w.Conn(), r.Token())
		b.respond(w, codes.Content, "")
	case r.HasOption(message.Block2) && b.serveBlock(w, r, path):
	default:
		// The broker stores no messages: a topic has no current value.
		b.respond(w, codes.Content, "")
	}
}

func (b *Broker) handleRegister(w *responseWriter, r *pool.Message, path string) {
	if err := transport.ValidateFilter(path); err != nil {
		b.respond(w, codes.BadRequest, "malformed filter")
		return
	}
	if len(r.Token()) == 0 {
		b.respond(w, codes.BadRequest, "an observation needs a token")
		return
	}
	wildcard := strings.ContainsAny(path, "+#")
	o, err := b.addObserver(w.Conn(), r.Token(), path, wildcard, b.observerSZX(r))
	if err != nil {
		b.respond(w, codes.ServiceUnavailable, "not observing: "+err.Error())
		return
	}
	if err := w.SetResponse(codes.Content, message.AppOctets, nil); err != nil {
		b.logf("broker: answering a registration: %v", err)
		b.drop(o)
		return
	}
	w.Message().SetObserve(o.nextSeq())
	// Notifications start once this response is on the wire.
	if !responsewriter.AfterWrite(r.Context(), o.start) {
		o.start()
	}
}

// respond sets a response with an optional diagnostic payload.
func (b *Broker) respond(w *responseWriter, code codes.Code, diagnostic string) {
	var body io.ReadSeeker // a nil *strings.Reader would not be a nil body
	if diagnostic != "" {
		body = strings.NewReader(diagnostic)
	}
	if err := w.SetResponse(code, message.TextPlain, body); err != nil {
		b.logf("broker: responding %v: %v", code, err)
	}
}

// transfer is a block-wise notification in progress: the snapshot its
// blocks are served from.
type transfer struct {
	obs      *observer
	pub      *publication
	served   chan struct{} // the last block was sent
	released chan struct{} // the transfer slot is free again
	once     sync.Once
	tokens   map[string]struct{} // of the block requests, guarded by Broker.mu
}

// finishedTokens is how many tokens of ended transfers a connection
// remembers, to recognise late retransmissions of their block requests.
const finishedTokens = 64

func (t *transfer) markServed() { t.once.Do(func() { close(t.served) }) }

// beginTransfer takes the slot for block-wise notifications of o's path on
// o's connection, waiting while another observation of the same path on
// the same connection (two subscriptions of one client) holds it: block
// requests name only the path, so one transfer per path at a time.
func (b *Broker) beginTransfer(o *observer, p *publication) (*transfer, error) {
	for {
		b.mu.Lock()
		cs := b.conns[o.cc]
		if cs == nil {
			b.mu.Unlock()
			return nil, errors.New("broker: connection gone")
		}
		busy := cs.transfers[o.path]
		if busy == nil {
			t := &transfer{obs: o, pub: p, served: make(chan struct{}), released: make(chan struct{}), tokens: make(map[string]struct{})}
			cs.transfers[o.path] = t
			b.mu.Unlock()
			return t, nil
		}
		b.mu.Unlock()
		select {
		case <-busy.released:
		case <-o.ctx.Done():
			return nil, fmt.Errorf("broker: observation ended: %w", o.ctx.Err())
		}
	}
}

func (b *Broker) endTransfer(o *observer, t *transfer) {
	b.mu.Lock()
	if cs := b.conns[o.cc]; cs != nil {
		if cs.transfers[o.path] == t {
			delete(cs.transfers, o.path)
		}
		for token := range t.tokens {
			cs.finished = append(cs.finished, token)
		}
		if extra := len(cs.finished) - finishedTokens; extra > 0 {
			cs.finished = slices.Delete(cs.finished, 0, extra)
		}
	}
	b.mu.Unlock()
	close(t.released)
}

// blockTransfer returns the transfer a block request of path on cc belongs
// to, recording its token; nil if there is none, or if the token is that of
// a transfer already over (a late retransmission, which must not be taken
// for a request of the current one).
func (b *Broker) blockTransfer(cc *udpclient.Conn, path string, token []byte) *transfer {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.conns[cc]
	if cs == nil || slices.Contains(cs.finished, string(token)) {
		return nil
	}
	t := cs.transfers[path]
	if t != nil {
		t.tokens[string(token)] = struct{}{}
	}
	return t
}

// observerSZX returns the block size of an observer's notifications: the
// broker's, or a smaller one the registration asked for with Block2 (RFC
// 7959 §2.4 early negotiation).
func (b *Broker) observerSZX(r *pool.Message) blockwise.SZX {
	v, err := r.GetOptionUint32(message.Block2)
	if err != nil {
		return b.szx
	}
	szx, _, _, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		return b.szx
	}
	return min(szx, b.szx)
}

// serveBlock answers a block request for a notification in transfer with
// the block it asks for, cut from the snapshot; the last block frees the
// observer for its next notification, once written.
func (b *Broker) serveBlock(w *responseWriter, r *pool.Message, path string) bool {
	t := b.blockTransfer(w.Conn(), path, r.Token())
	if t == nil {
		return false
	}
	v, _ := r.GetOptionUint32(message.Block2) // the caller checked it is there
	szx, num, _, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		b.respond(w, codes.BadOption, "malformed Block2")
		return true
	}
	// The offset is the client's; the block size at most the observer's
	// (RFC 7959 §2.4: a server may answer with smaller blocks).
	offset := num * szx.Size()
	szx = min(szx, t.obs.szx)
	payload := t.pub.payload
	if offset >= int64(len(payload)) {
		b.respond(w, codes.BadOption, "no such block")
		return true
	}
	end := min(offset+szx.Size(), int64(len(payload)))
	more := end < int64(len(payload))
	block, _ := blockwise.EncodeBlockOption(szx, offset/szx.Size(), more) // block number within the payload: no error
	if err := w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(payload[offset:end])); err != nil {
		b.logf("broker: serving a block: %v", err)
		return true
	}
	w.Message().SetOptionUint32(message.Block2, block)
	w.Message().SetOptionUint32(message.Size2, uint32(len(payload)))
	if err := b.setRepresentation(w.Message(), t.obs, t.pub); err != nil {
		b.logf("broker: serving a block: %v", err)
	}
	if !more && !responsewriter.AfterWrite(r.Context(), t.markServed) {
		t.markServed()
	}
	return true
}

// onNewConn keeps the state of a connection (observations, transfers,
// uploads) as long as it lives.
func (b *Broker) onNewConn(cc *udpclient.Conn) {
	b.mu.Lock()
	b.conns[cc] = newConnState(msgid.New(b.idWindow, b.idLimit, time.Now))
	b.mu.Unlock()
	cc.AddOnClose(func() { b.dropConn(cc) })
}

// inactivityMonitor pings a connection idle for IdleTimeout/(retries+1)
// and closes it when keepAliveRetries pings in a row go unanswered. Live
// observers answer pings, so they stay however quiet their topics are.
// (Unlike go-coap's default, checks go on while confirmable messages are
// pending: an unanswered ping is one, and would hide a dead peer.)
func (b *Broker) inactivityMonitor() udpclient.InactivityMonitor {
	keepAlive := inactivity.NewKeepAlive(keepAliveRetries,
		func(cc *udpclient.Conn) { _ = cc.Close() },
		func(cc *udpclient.Conn, pong func()) (func(), error) { return cc.AsyncPing(pong) })
	return inactivity.New(b.opts.IdleTimeout/(keepAliveRetries+1), keepAlive.OnInactive)
}

func (b *Broker) errorf(err error) { b.logf("broker: %v", err) }

func (b *Broker) periodic(f func(time.Time) bool) {
	go func() {
		for f(time.Now()) {
			time.Sleep(periodicInterval)
		}
	}()
}

// serverConfig applies the broker's settings to go-coap's UDP or DTLS
// server configuration.
type serverConfig struct{ b *Broker }

// UDPServerApply implements udpserver.Option.
func (s serverConfig) UDPServerApply(cfg *udpserver.Config) {
	b := s.b
	cfg.Handler = b.handle
	cfg.OnNewConn = b.onNewConn
	cfg.CreateInactivityMonitor = b.inactivityMonitor
	b.applyCommon(&cfg.Common)
}

// DTLSServerApply implements dtlsserver.Option.
func (s serverConfig) DTLSServerApply(cfg *dtlsserver.Config) {
	b := s.b
	cfg.Handler = b.handle
	cfg.OnNewConn = b.onNewConn
	cfg.CreateInactivityMonitor = b.inactivityMonitor
	b.applyCommon(&cfg.Common)
}

// applyCommon sets the options UDP and DTLS servers share.
func (b *Broker) applyCommon(cfg *config.Common[*udpclient.Conn]) {
	cfg.Errors = b.errorf
	cfg.PeriodicRunner = b.periodic
	// Block-wise transfers are the broker's own (see the package doc).
	cfg.BlockwiseEnable = false
}
