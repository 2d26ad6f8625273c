package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
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

// handle serves one request (after go-coap's block-wise layer has
// reassembled its body).
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
	if size, err := r.BodySize(); err == nil && size > int64(b.opts.MaxPayload) {
		b.respond(w, codes.RequestEntityTooLarge, "payload too large")
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
	o, err := b.addObserver(w.Conn(), r.Token(), path, wildcard)
	if err != nil {
		b.respond(w, codes.ServiceUnavailable, "broker closing")
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

// serveBlock answers a block request for a notification in transfer with
// the whole snapshot; go-coap's block-wise layer cuts the requested block
// out of it and keeps it for the next blocks.
func (b *Broker) serveBlock(w *responseWriter, r *pool.Message, path string) bool {
	t := b.blockTransfer(w.Conn(), path, r.Token())
	if t == nil {
		return false
	}
	if err := w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(t.pub.payload)); err != nil {
		b.logf("broker: serving a block: %v", err)
		return true
	}
	if err := b.setRepresentation(w.Message(), t.obs, t.pub); err != nil {
		b.logf("broker: serving a block: %v", err)
	}
	return true
}

// blockRequest describes a GET for a block of a notification.
type blockRequest struct {
	path  string
	token []byte
	szx   blockwise.SZX
	num   int64
}

func (b *Broker) parseBlockRequest(r *pool.Message) (blockRequest, bool) {
	if r.Code() != codes.GET || r.HasOption(message.Observe) {
		return blockRequest{}, false
	}
	v, err := r.GetOptionUint32(message.Block2)
	if err != nil {
		return blockRequest{}, false
	}
	szx, num, _, err := blockwise.DecodeBlockOption(v)
	if err != nil {
		return blockRequest{}, false
	}
	path, ok := topicpath.Topic(message.URIPath, b.prefix, r.Options())
	if !ok {
		return blockRequest{}, false
	}
	return blockRequest{path: path, token: bytes.Clone(r.Token()), szx: min(szx, b.szx), num: num}, true
}

// process runs go-coap's processing of one received message; when it was a
// request for the last block of a notification, the response is written
// when processing returns, so the observer may send its next notification.
func (b *Broker) process(req *pool.Message, cc *udpclient.Conn, handler config.HandlerFunc[*udpclient.Conn]) {
	br, isBlock := b.parseBlockRequest(req)
	cc.ProcessReceivedMessageWithHandler(req, handler)
	if !isBlock {
		return
	}
	if t := b.blockTransfer(cc, br.path, br.token); t != nil && (br.num+1)*br.szx.Size() >= int64(len(t.pub.payload)) {
		t.markServed()
	}
}

// monitorRequest refuses, with 4.13, block-wise uploads that announce or
// reach more than MaxPayload, before go-coap buffers them. It runs on the
// goroutine that reads the server's socket: it must not block.
func (b *Broker) monitorRequest(cc *udpclient.Conn, req *pool.Message) (bool, error) {
	if !b.exceedsMaxPayload(req) {
		return false, nil
	}
	resp := cc.AcquireMessage(cc.Context())
	defer cc.ReleaseMessage(resp)
	resp.SetCode(codes.RequestEntityTooLarge)
	resp.SetToken(req.Token())
	resp.SetOptionUint32(message.Size1, uint32(min(int64(b.opts.MaxPayload), math.MaxUint32)))
	if req.Type() == message.Confirmable {
		resp.SetType(message.Acknowledgement)
		resp.SetMessageID(req.MessageID())
	} else {
		resp.SetType(message.NonConfirmable)
		resp.SetMessageID(cc.GetMessageID())
	}
	// Straight to the socket: go-coap's own writers would treat this as a
	// new confirmable message and block the server's reading goroutine.
	if err := cc.Session().WriteMessage(resp); err != nil {
		b.logf("broker: refusing a large upload: %v", err)
	}
	return true, nil
}

func (b *Broker) exceedsMaxPayload(req *pool.Message) bool {
	if req.Code() != codes.PUT && req.Code() != codes.POST {
		return false
	}
	if size, err := req.GetOptionUint32(message.Size1); err == nil && int64(size) > int64(b.opts.MaxPayload) {
		return true
	}
	v, err := req.GetOptionUint32(message.Block1)
	if err != nil {
		return false
	}
	szx, num, _, err := blockwise.DecodeBlockOption(v)
	// A block starting at MaxPayload carries bytes beyond it.
	return err != nil || num*szx.Size() >= int64(b.opts.MaxPayload)
}

// onNewConn ties the observations of a connection to its life.
func (b *Broker) onNewConn(cc *udpclient.Conn) {
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
	cfg.RequestMonitor = b.monitorRequest
	cfg.CreateInactivityMonitor = b.inactivityMonitor
	b.applyCommon(&cfg.Common)
}

// DTLSServerApply implements dtlsserver.Option.
func (s serverConfig) DTLSServerApply(cfg *dtlsserver.Config) {
	b := s.b
	cfg.Handler = b.handle
	cfg.OnNewConn = b.onNewConn
	cfg.RequestMonitor = b.monitorRequest
	cfg.CreateInactivityMonitor = b.inactivityMonitor
	b.applyCommon(&cfg.Common)
}

// applyCommon sets the options UDP and DTLS servers share.
func (b *Broker) applyCommon(cfg *config.Common[*udpclient.Conn]) {
	cfg.Errors = b.errorf
	cfg.ProcessReceivedMessage = b.process
	cfg.PeriodicRunner = b.periodic
	cfg.BlockwiseEnable = true
	cfg.BlockwiseSZX = b.szx
	cfg.BlockwiseTransferTimeout = b.opts.TransferTimeout
}
