package e4transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// protectedSubscription unprotects what the inner subscription receives.
// Messages that await a key (see Options.AwaitKey) are held aside
// while the next ones keep flowing.
type protectedSubscription struct {
	inner transport.Subscription
	p     *Protected

	// noBatch unprotects one message at a time (Protected.noBatch).
	noBatch bool

	mu        sync.Mutex // guards held, heldBytes, ready and ended
	held      []*heldMessage
	heldBytes int
	// ready[readyNext:] are the readable messages of a batch not yet
	// returned; the slice is reused once they all are.
	ready     []*transport.Message
	readyNext int
	ended     bool
	// readyQueued is cancelled, and set to nil, when a batch queues
	// messages while other receivers are in Receive.
	readyQueued context.Context
	readySignal context.CancelFunc

	receivers atomic.Int32 // goroutines in Receive
}

// heldMessage is a message set aside until a command brings its key.
type heldMessage struct {
	msg      *transport.Message
	err      error     // why it could not be read the last time
	triedGen uint64    // the key generation it was last tried under
	deadline time.Time // when it is dropped
}

// Receive returns the next message that unprotects correctly; the others
// are dropped and reported, or held for a key. Messages on the client's
// own control topic (matched by a wide filter) are commands, applied by the
// control subscription, and are skipped here, as are the client's own
// acknowledgements and sync requests below it. When several messages are
// already buffered, up to maxBatch of them are unprotected together
// (e4.Client.UnprotectBatch) and the readable ones queued for the next
// calls, in order.
func (s *protectedSubscription) Receive(ctx context.Context) (*transport.Message, error) {
	s.receivers.Add(1)
	defer s.receivers.Add(-1)
	for {
		msg, readyQueued := s.nextReady()
		if msg != nil {
			return msg, nil
		}
		msg, keysChanged := s.releaseHeld()
		if msg != nil {
			return msg, nil
		}
		msg, err := s.receiveInner(ctx, readyQueued, keysChanged)
		if err != nil {
			return nil, err
		}
		if msg == nil {
			continue // woken to look at the held messages
		}
		var room [maxBatch]*transport.Message
		batch := s.gatherBuffered(room[:0], msg)
		if len(batch) > 1 {
			s.unprotectBatch(batch)
			continue
		}
		if len(batch) == 1 {
			gen, _ := s.p.keyGeneration()
			plain, err := s.unprotectInPlace(batch[0])
			if s.settle(batch[0], plain, err, gen) {
				return batch[0], nil
			}
		}
	}
}

// maxBatch is how many buffered messages Receive unprotects together: the
// run length of e4.Client.UnprotectBatch.
const maxBatch = 16

// noWait is an ended context: Receive under it returns a message only if
// one is already buffered.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// gatherBuffered appends to batch first, unless it is E4 protocol
// traffic, followed by the data messages the inner subscription already
// buffers, up to maxBatch in all, without waiting. Without batching it
// appends first alone.
func (s *protectedSubscription) gatherBuffered(batch []*transport.Message, first *transport.Message) []*transport.Message {
	if !s.ownProtocolTopic(first.Topic) {
		batch = append(batch, first)
	}
	if s.noBatch || s.receivers.Load() > 1 {
		// Other receivers take the next messages themselves.
		return batch
	}
	// An adapter's Receive under an ended context returns a buffered
	// message or the context's error; one that picks the error while a
	// message waits only makes the batch shorter.
	for tries := 1; tries < maxBatch && len(batch) < maxBatch; tries++ {
		msg, err := s.inner.Receive(noWait)
		if err != nil {
			break
		}
		if !s.ownProtocolTopic(msg.Topic) {
			batch = append(batch, msg)
		}
	}
	return batch
}

// unprotectBatch unprotects msgs together, each into its own pooled
// buffer, settles each result as Receive does one message, and queues the
// readable ones for delivery in order.
func (s *protectedSubscription) unprotectBatch(msgs []*transport.Message) {
	var bufs [maxBatch]*[]byte
	var batch [maxBatch]e4.BatchMessage
	for i, msg := range msgs {
		bufs[i] = getBuffer()
		// Each Dst is its own pooled buffer, so no Dst shares memory with
		// another one or with a payload.
		batch[i] = e4.BatchMessage{Topic: msg.Topic, In: msg.Payload, Dst: (*bufs[i])[:0]}
	}
	gen, _ := s.p.keyGeneration()
	s.p.client.UnprotectBatch(batch[:len(msgs)])
	s.p.batched.Add(uint64(len(msgs)))
	var room [maxBatch]*transport.Message
	ready := room[:0]
	for i, msg := range msgs {
		m := &batch[i]
		*bufs[i] = m.Out
		var plain []byte
		if m.Err == nil {
			plain = msg.Payload[:copy(msg.Payload, m.Out)]
			clear(m.Out) // leave no plaintext in pooled memory
		}
		putBuffer(bufs[i])
		if s.settle(msg, plain, m.Err, gen) {
			ready = append(ready, msg)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || len(ready) == 0 {
		return
	}
	s.ready = append(s.ready, ready...)
	if s.receivers.Load() > 1 && s.readyQueued != nil {
		// Receivers that came in after this batch was gathered may be
		// waiting on the inner subscription: wake them for these.
		s.readySignal()
		s.readyQueued = nil
	}
}

// settle finishes one received message after its unprotection, tried
// under key generation gen: it reports whether msg is to be delivered (its
// payload set to plain), and otherwise drops it or holds it for a key.
func (s *protectedSubscription) settle(msg *transport.Message, plain []byte, err error, gen uint64) bool {
	switch {
	case err == nil:
		msg.Payload = plain
		return true
	case errors.Is(err, e4.ErrTopicKeyNotFound) && s.p.opts.DeliverUnkeyed:
		return true
	case awaitsKey(err) && s.p.opts.AwaitKey > 0:
		s.hold(msg, err, gen)
	default:
		s.p.drop(msg.Topic, err)
	}
	return false
}

// nextReady takes the oldest message an earlier batch left to deliver.
// When there is none, it returns a context cancelled when a batch queues
// some while other receivers are in Receive.
func (s *protectedSubscription) nextReady() (*transport.Message, context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyNext == len(s.ready) {
		if s.readyQueued == nil {
			s.readyQueued, s.readySignal = context.WithCancel(context.Background())
		}
		return nil, s.readyQueued
	}
	msg := s.ready[s.readyNext]
	s.ready[s.readyNext] = nil
	s.readyNext++
	if s.readyNext == len(s.ready) {
		s.ready, s.readyNext = s.ready[:0], 0
	}
	return msg, nil
}

// ownProtocolTopic reports the client's own protocol topics (see
// IsProtocolTopic), which a wide filter matches but which are not the
// application's.
func (s *protectedSubscription) ownProtocolTopic(topic string) bool {
	return IsProtocolTopic(s.p.client, topic)
}

// receiveInner waits for the next message of the inner subscription. While
// messages are held it also wakes, returning nil, nil, when keysChanged
// ends (a command was applied since releaseHeld tried them) or the first
// held message's time is up; while other receivers are in Receive, also
// when readyQueued ends (one of them queued a batch's messages).
func (s *protectedSubscription) receiveInner(ctx, readyQueued, keysChanged context.Context) (*transport.Message, error) {
	deadline, holding := s.nextDeadline()
	shared := s.receivers.Load() > 1
	if !holding && !shared {
		return s.inner.Receive(ctx)
	}
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	if holding {
		var cancelDeadline context.CancelFunc
		wait, cancelDeadline = context.WithDeadline(wait, deadline)
		defer cancelDeadline()
		stop := context.AfterFunc(keysChanged, cancel)
		defer stop()
	}
	stop := context.AfterFunc(readyQueued, cancel)
	defer stop()
	msg, err := s.inner.Receive(wait)
	if err != nil && ctx.Err() == nil && wait.Err() != nil {
		// Only the wait ended: no message was taken from inner.
		return nil, nil
	}
	return msg, err
}

// nextDeadline returns the earliest deadline of the held messages, and
// whether any is held.
func (s *protectedSubscription) nextDeadline() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.held) == 0 {
		return time.Time{}, false
	}
	first := s.held[0].deadline
	for _, h := range s.held[1:] {
		if h.deadline.Before(first) {
			first = h.deadline
		}
	}
	return first, true
}

// hold sets msg aside for a key, or drops it when the subscription holds
// as much as it may.
func (s *protectedSubscription) hold(msg *transport.Message, err error, gen uint64) {
	opts := &s.p.opts
	s.mu.Lock()
	full := len(s.held) >= opts.AwaitKeyMaxHeld || s.heldBytes+len(msg.Payload) > opts.AwaitKeyMaxBytes
	if !full {
		s.held = append(s.held, &heldMessage{msg: msg, err: err, triedGen: gen, deadline: time.Now().Add(opts.AwaitKey)})
		s.heldBytes += len(msg.Payload)
	}
	s.mu.Unlock()
	if full {
		s.p.drop(msg.Topic, fmt.Errorf("%w: %w", ErrAwaitKeyFull, err))
	}
}

// releaseHeld tries the held messages again under the keys applied since
// they were last tried, oldest first, and returns the first that
// unprotects, with a context that ends once a command is applied after
// this try. Held messages whose time is up are dropped and reported.
func (s *protectedSubscription) releaseHeld() (*transport.Message, context.Context) {
	// The context of the generation tried here is what receiveInner waits
	// on: a command applied after this point must wake it.
	gen, keysChanged := s.p.keyGeneration()
	now := time.Now()
	var expired []*heldMessage
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		for _, h := range expired {
			s.p.drop(h.msg.Topic, h.err)
		}
	}()
	for i := 0; i < len(s.held); {
		h := s.held[i]
		if h.triedGen != gen {
			h.triedGen = gen
			plain, err := s.unprotectInPlace(h.msg)
			if err == nil {
				s.removeHeldLocked(i)
				h.msg.Payload = plain
				return h.msg, keysChanged
			}
			h.err = err
			if !awaitsKey(err) {
				s.removeHeldLocked(i)
				expired = append(expired, h)
				continue
			}
		}
		if !now.Before(h.deadline) {
			s.removeHeldLocked(i)
			expired = append(expired, h)
			continue
		}
		i++
	}
	return nil, keysChanged
}

// removeHeldLocked takes the i-th held message out, keeping the order.
func (s *protectedSubscription) removeHeldLocked(i int) {
	s.heldBytes -= len(s.held[i].msg.Payload)
	copy(s.held[i:], s.held[i+1:])
	s.held[len(s.held)-1] = nil
	s.held = s.held[:len(s.held)-1]
}

// unprotectInPlace unprotects msg into scratch space and, on success,
// copies the plaintext over the front of msg.Payload, which the receiver
// owns: no allocation per message. On failure msg.Payload is untouched, so
// it can be tried again once a key arrives.
func (s *protectedSubscription) unprotectInPlace(msg *transport.Message) ([]byte, error) {
	buf := getBuffer()
	defer putBuffer(buf)
	plain, err := s.p.client.Unprotect((*buf)[:0], msg.Payload, msg.Topic)
	*buf = plain
	if err != nil {
		return nil, err
	}
	n := copy(msg.Payload, plain)
	clear(plain) // leave no plaintext in pooled memory
	return msg.Payload[:n], nil
}

// awaitsKey reports whether err may go away once C2's next command arrives.
func awaitsKey(err error) bool {
	return errors.Is(err, e4.ErrTopicKeyNotFound) || errors.Is(err, e4.ErrPubKeyNotFound) || errors.Is(err, e4.ErrAuthentication)
}

// Unsubscribe ends the subscription and forgets the held messages and
// those of a batch not yet returned.
func (s *protectedSubscription) Unsubscribe(ctx context.Context) error {
	s.mu.Lock()
	clear(s.held)
	s.held, s.heldBytes = nil, 0
	clear(s.ready)
	s.ready, s.readyNext, s.ended = nil, 0, true
	s.mu.Unlock()
	return s.inner.Unsubscribe(ctx)
}
