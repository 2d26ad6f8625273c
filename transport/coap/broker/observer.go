package broker

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/internal/datagram"
	"github.com/e4-iot/e4kit/transport/coap/internal/msgid"
	"github.com/e4-iot/e4kit/transport/coap/internal/topicpath"
)

// observeMask keeps Observe sequence numbers to the option's 24 bits.
const observeMask = 1<<24 - 1

// observer is one observation: its own queue and the goroutine that sends
// it, one confirmable notification at a time.
type observer struct {
	b        *Broker
	cc       *udpclient.Conn
	ids      *msgid.Budget // of cc, shared by its observations
	token    []byte
	path     string // as observed: a topic, or a filter if wildcard
	wildcard bool
	szx      blockwise.SZX // block size of its block-wise notifications
	// maxDatagram bounds its notifications sent whole (0: one block of
	// payload).
	maxDatagram int

	ctx    context.Context // ends when the observation does
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []*publication
	wake    chan struct{} // a message was queued
	started bool
	seq     uint32 // last Observe value sent
	dropped int    // messages lost to QueueLimit, for the log
}

func newObserver(b *Broker, cc *udpclient.Conn, ids *msgid.Budget, token []byte, path string, wildcard bool, szx blockwise.SZX) *observer {
	ctx, cancel := context.WithCancel(cc.Context())
	maxDatagram := b.maxDatagram
	if szx < b.szx {
		// The observer asked for smaller blocks: it wants small datagrams.
		maxDatagram = 0
	}
	return &observer{
		b: b, cc: cc, ids: ids, token: bytes.Clone(token), path: path, wildcard: wildcard,
		szx: szx, maxDatagram: maxDatagram,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
	}
}

func (o *observer) matches(topic string) bool { return transport.Match(o.path, topic) }

// nextSeq returns the Observe value of the next message to o's client.
func (o *observer) nextSeq() uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq = (o.seq + 1) & observeMask
	return o.seq
}

// enqueue adds p to the queue, dropping the oldest message when full.
func (o *observer) enqueue(p *publication) {
	o.mu.Lock()
	if len(o.queue) >= o.b.opts.QueueLimit {
		o.queue[0] = nil
		o.queue = o.queue[1:]
		o.dropped++
	}
	o.queue = append(o.queue, p)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// start runs the sender, once: after the registration response was
// written, so that no notification overtakes it.
func (o *observer) start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.started {
		o.started = true
		go o.run()
	}
}

// stop ends the observation's sender; queued messages are dropped.
func (o *observer) stop() { o.cancel() }

func (o *observer) run() {
	for {
		p, ok := o.next()
		if !ok {
			return
		}
		if err := o.deliver(p); err != nil {
			if o.ctx.Err() == nil {
				// Not acknowledged after every retransmission. A dead client
				// is also caught by the keepalive, which closes the whole
				// connection; a live but stalled one will observe again.
				o.b.logf("broker: observer %s of %q dropped: %v", o.cc.RemoteAddr(), o.path, err)
				o.b.drop(o)
			}
			return
		}
	}
}

// next waits for the oldest queued message.
func (o *observer) next() (*publication, bool) {
	for {
		o.mu.Lock()
		if len(o.queue) > 0 {
			p := o.queue[0]
			o.queue[0] = nil
			o.queue = o.queue[1:]
			if o.dropped > 0 {
				o.b.logf("broker: observer %s of %q too slow: %d messages dropped", o.cc.RemoteAddr(), o.path, o.dropped)
				o.dropped = 0
			}
			o.mu.Unlock()
			return p, true
		}
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-o.ctx.Done():
			return nil, false
		}
	}
}

// deliver sends one notification and returns once the client has it: when
// it acknowledged the notification and, for a block-wise one, fetched the
// last block (or TransferTimeout passed).
func (o *observer) deliver(p *publication) error {
	msg, err := o.notification(p)
	if err != nil {
		return err
	}
	defer o.cc.ReleaseMessage(msg)
	if datagram.Fits(msg, len(p.payload), o.szx, o.maxDatagram) {
		msg.SetBody(bytes.NewReader(p.payload))
		return o.send(msg)
	}
	t, err := o.b.beginTransfer(o, p)
	if err != nil {
		return err
	}
	defer o.b.endTransfer(o, t)
	// The notification carries the first block (RFC 7959 §2.6).
	block, err := blockwise.EncodeBlockOption(o.szx, 0, true)
	if err != nil {
		return fmt.Errorf("broker: first block: %w", err)
	}
	msg.SetOptionUint32(message.Block2, block)
	msg.SetOptionUint32(message.Size2, uint32(len(p.payload)))
	msg.SetBody(bytes.NewReader(p.payload[:o.szx.Size()]))
	if err := o.send(msg); err != nil {
		return err
	}
	timer := time.NewTimer(o.b.opts.TransferTimeout)
	defer timer.Stop()
	select {
	case <-t.served:
	case <-timer.C:
		o.b.logf("broker: observer %s of %q did not fetch a %d-byte notification", o.cc.RemoteAddr(), o.path, len(p.payload))
	case <-o.ctx.Done():
	}
	return nil
}

// notification returns a confirmable notification of p, without its body,
// to be released.
func (o *observer) notification(p *publication) (*pool.Message, error) {
	msg := o.cc.AcquireMessage(o.ctx)
	msg.SetCode(codes.Content)
	msg.SetType(message.Confirmable)
	msg.SetToken(o.token)
	msg.SetObserve(o.nextSeq())
	if err := o.b.setRepresentation(msg, o, p); err != nil {
		o.cc.ReleaseMessage(msg)
		return nil, err
	}
	msg.SetContentFormat(message.AppOctets)
	return msg, nil
}

// send writes a notification and waits for its acknowledgement. It first
// waits, if need be, until the client can take a new Message ID.
func (o *observer) send(msg *pool.Message) error {
	if err := o.ids.Take(o.ctx, msgid.ControlReserve, nil); err != nil {
		return fmt.Errorf("broker: notifying: %w", err)
	}
	if err := o.cc.WriteMessage(msg); err != nil {
		return fmt.Errorf("broker: notifying: %w", err)
	}
	return nil
}

// setRepresentation adds what identifies p in a notification or in a
// block of it: its ETag and, for a filter, its topic as Location-Path.
func (b *Broker) setRepresentation(msg *pool.Message, o *observer, p *publication) error {
	if err := msg.SetETag(p.etag[:]); err != nil {
		return fmt.Errorf("broker: setting ETag: %w", err)
	}
	if !o.wildcard {
		return nil
	}
	location, err := topicpath.Options(message.LocationPath, b.prefix, p.topic)
	if err != nil {
		return fmt.Errorf("broker: topic as Location-Path: %w", err)
	}
	for _, opt := range location {
		msg.AddOptionBytes(opt.ID, opt.Value)
	}
	return nil
}

// sendGoodbye tells the client that the observation ended (RFC 7641 §3.2: a
// notification without Observe), so that it can observe again elsewhere or
// later. Non-confirmable: the broker is going away.
func (o *observer) sendGoodbye() {
	msg := o.cc.AcquireMessage(context.Background())
	defer o.cc.ReleaseMessage(msg)
	msg.SetCode(codes.ServiceUnavailable)
	msg.SetType(message.NonConfirmable)
	msg.SetToken(o.token)
	if err := o.cc.WriteMessage(msg); err != nil {
		o.b.logf("broker: telling %s the observation of %q ends: %v", o.cc.RemoteAddr(), o.path, err)
	}
}
