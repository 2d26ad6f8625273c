package coap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/client"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/internal/topicpath"
	"github.com/e4-iot/e4kit/transport/internal/inbox"
)

// recentETags is how many ETags a subscription remembers to drop the
// duplicates of two overlapping observations.
const recentETags = 1024

// subscription is one Subscribe: a CoAP observation, replaced whenever it
// is lost or renewed.
type subscription struct {
	t        *Transport
	filter   string
	wildcard bool
	path     []message.Option

	// in holds up to ReceiveBuffer messages and ReceiveBytes of payload;
	// a notification that does not fit waits, unacknowledged.
	in      *inbox.Inbox
	done    chan struct{} // closed by Unsubscribe or Close
	lostSig chan struct{} // the observation ended, observe again
	endOnce sync.Once

	mu      sync.Mutex
	obs     client.Observation // current observation
	gen     uint64             // generation of obs
	old     client.Observation // replaced by obs, kept until obs caught up with it
	oldGen  uint64
	nextGen uint64
	waiters []*sync.WaitGroup // reconnections waiting for the next observation
	noETags bool              // the broker does not name publications with ETags
	seen    map[string]uint64 // recent ETags → generation that delivered them
	order   []string          // seen, oldest first
}

func newSubscription(t *Transport, filter string, wildcard bool, path []message.Option) *subscription {
	return &subscription{
		t: t, filter: filter, wildcard: wildcard, path: path,
		in:      inbox.NewBounded(t.cfg.ReceiveBuffer, t.cfg.ReceiveBytes),
		done:    make(chan struct{}),
		lostSig: make(chan struct{}, 1),
		seen:    make(map[string]uint64),
	}
}

// Receive implements transport.Subscription.
func (s *subscription) Receive(ctx context.Context) (*transport.Message, error) {
	return s.in.Receive(ctx)
}

// Unsubscribe implements transport.Subscription: it deregisters the
// observation and waits for the broker's answer or ctx.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	if s.t.isClosed() {
		return transport.ErrClosed
	}
	return s.end(ctx)
}

// end stops delivery and deregisters the observation; idempotent.
func (s *subscription) end(ctx context.Context) error {
	var obs, old client.Observation
	s.endOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		s.in.End()
		obs, old = s.obs, s.old
		s.obs, s.old = nil, nil
		s.mu.Unlock()
		s.t.removeSub(s)
	})
	cancelObservation(ctx, old)
	if obs == nil {
		return nil
	}
	if err := obs.Cancel(ctx); err != nil {
		return fmt.Errorf("coap: unsubscribing from %q: %w", s.filter, err)
	}
	return nil
}

// cancelObservation deregisters obs if it is still registered; errors are
// ignored (a broker that forgot it has nothing to cancel).
func cancelObservation(ctx context.Context, obs client.Observation) {
	if obs != nil && !obs.Canceled() {
		_ = obs.Cancel(ctx)
	}
}

func (s *subscription) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// observe registers a new observation on conn and makes it current.
//
// After a loss (handover false) the observation it replaces is dead or
// useless, and is deregistered at once. A renewal (handover true) must
// lose nothing: the old observation may still hold messages published
// before the new one registered, so it stays until both have delivered a
// same message (seen by its ETag); the overlap's duplicates are dropped.
// A broker without ETags gets no such overlap.
func (s *subscription) observe(ctx context.Context, conn *udpclient.Conn, handover bool) error {
	s.mu.Lock()
	s.nextGen++
	gen := s.nextGen
	s.mu.Unlock()
	if err := s.t.takeID(ctx, 0); err != nil {
		return err
	}
	obs, err := conn.Observe(ctx, "", s.notification(conn, gen), s.registrationOptions()...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.ended() {
		s.mu.Unlock()
		cancelObservation(ctx, obs)
		return transport.ErrClosed
	}
	stale, prev, prevGen := s.old, s.obs, s.gen
	s.obs, s.gen = obs, gen
	s.old, s.oldGen = nil, 0
	if handover && !s.noETags {
		s.old, s.oldGen = prev, prevGen
		prev = nil
	}
	s.mu.Unlock()
	cancelObservation(ctx, stale)
	cancelObservation(ctx, prev)
	return nil
}

// registrationOptions are the options of a registration: the path and,
// with blocks smaller than 1024 bytes, the block size that notifications
// should use (RFC 7959 §2.4 early negotiation; our broker then keeps them
// within one block per datagram).
func (s *subscription) registrationOptions() []message.Option {
	if s.t.szx >= blockwise.SZX1024 {
		return s.path
	}
	block, _ := blockwise.EncodeBlockOption(s.t.szx, 0, false) // a valid SZX, block 0: no error
	value := make([]byte, 4)
	n, _ := message.EncodeUint32(value, block)
	return append(slices.Clip(s.path), message.Option{ID: message.Block2, Value: value[:n]})
}

// notification returns the callback of observation gen on conn. go-coap
// calls it for the registration response too: that one is the state before
// the subscription, not a publication, and is skipped.
//
// The registration response cannot be told by its rank: go-coap hands it
// over (and Observe returns) before calling back, and a notification that
// follows at once may be called back first, on another goroutine. It is
// told by its type instead: an acknowledgement (piggybacked response),
// whereas notifications are confirmable or not. A notification reassembled
// from blocks also looks like an acknowledgement, but has no message ID
// (go-coap builds it, on an application's connection with its block-wise
// layer on); a block-wise registration response (a large current value,
// libcoap) is taken for one only as the first call.
func (s *subscription) notification(conn *udpclient.Conn, gen uint64) func(*pool.Message) {
	var called atomic.Bool
	return func(m *pool.Message) {
		first := !called.Swap(true)
		if m.Type() == message.Acknowledgement && (first || message.ValidateMID(m.MessageID())) {
			return
		}
		switch m.Code() {
		case codes.Content:
			if msg, ok := s.decode(conn, m, gen); ok {
				s.deliver(msg)
			}
		case codes.Valid:
		default:
			s.t.reportError(fmt.Errorf("coap: observation of %q ended by the broker: %v", s.filter, m.Code()))
			s.lost(gen)
			return
		}
		if !m.HasOption(message.Observe) {
			s.lost(gen) // the last notification of the observation
		}
	}
}

// decode turns a notification of observation gen into a Message, or
// drops a duplicate. A block-wise notification is completed first, even a
// duplicate: our broker sends the observation nothing more until its last
// block was fetched.
func (s *subscription) decode(conn *udpclient.Conn, m *pool.Message, gen uint64) (*transport.Message, bool) {
	payload, err := s.bodyOf(conn, m)
	if err != nil {
		s.t.reportError(fmt.Errorf("coap: notification of %q unreadable: %w", s.filter, err))
		return nil, false
	}
	if etag, err := m.ETag(); err != nil {
		s.mu.Lock()
		s.noETags = true
		s.mu.Unlock()
	} else if !s.firstSeen(etag, gen) {
		return nil, false
	}
	topic := s.filter
	if s.wildcard {
		var ok bool
		topic, ok = topicpath.Topic(message.LocationPath, s.t.prefix, m.Options())
		if !ok || !transport.Match(s.filter, topic) {
			s.t.reportError(fmt.Errorf("coap: notification of %q without a matching topic dropped", s.filter))
			return nil, false
		}
	}
	if payload == nil {
		payload = []byte{}
	}
	return &transport.Message{Topic: topic, Payload: payload}, true
}

// firstSeen records that observation gen delivered the publication named
// etag and reports whether it is new. A publication delivered by both the
// current and the replaced observation ends the handover: the replaced one
// has nothing older left to deliver, and is deregistered.
func (s *subscription) firstSeen(etag []byte, gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := string(etag)
	if first, dup := s.seen[key]; dup {
		if s.old != nil && first != gen && (gen == s.oldGen || first == s.oldGen) {
			old := s.old
			s.old, s.oldGen = nil, 0
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), s.t.cfg.Timeout)
				defer cancel()
				cancelObservation(ctx, old)
			}()
		}
		return false
	}
	s.seen[key] = gen
	s.order = append(s.order, key)
	if len(s.order) > recentETags {
		delete(s.seen, s.order[0])
		s.order = s.order[1:]
	}
	return true
}

// deliver hands msg to Receive. It blocks while the buffer is full (by
// count or by bytes), which delays the acknowledgement of the
// notification: the broker then keeps the next messages in its queue. It
// gives up when the subscription ends, which ends the inbox.
func (s *subscription) deliver(msg *transport.Message) {
	s.in.PushWait(context.Background(), msg)
}

// lost asks maintain to observe again, if gen is the current observation
// (0: whatever the current one is).
func (s *subscription) lost(gen uint64) {
	s.mu.Lock()
	current := gen == 0 || gen == s.gen
	s.mu.Unlock()
	if !current {
		return
	}
	select {
	case s.lostSig <- struct{}{}:
	default:
	}
}

// lostWaiting is lost(0) for a reconnection: restored.Done is called once
// the subscription observes again, or has ended.
func (s *subscription) lostWaiting(restored *sync.WaitGroup) {
	s.mu.Lock()
	s.waiters = append(s.waiters, restored)
	s.mu.Unlock()
	s.lost(0)
}

// releaseWaiters takes the waiters of reconnections, to be released once
// the observation that follows is made.
func (s *subscription) releaseWaiters() []*sync.WaitGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.waiters
	s.waiters = nil
	return w
}

// maintain observes again when the observation is lost, and renews it
// every Refresh.
func (s *subscription) maintain() {
	defer s.t.wg.Done()
	var refresh <-chan time.Time
	if s.t.cfg.Refresh > 0 {
		ticker := time.NewTicker(s.t.cfg.Refresh)
		defer ticker.Stop()
		refresh = ticker.C
	}
	defer func() {
		for _, w := range s.releaseWaiters() {
			w.Done()
		}
	}()
	for {
		select {
		case <-s.done:
			return
		case <-s.t.done:
			return
		case <-s.lostSig:
			waiters := s.releaseWaiters()
			s.reobserve(false)
			for _, w := range waiters {
				w.Done()
			}
		case <-refresh:
			s.reobserve(true)
		}
	}
}

// reobserve retries observe with backoff until it succeeds or the
// subscription ends.
func (s *subscription) reobserve(handover bool) {
	backoff := minBackoff
	for !s.ended() {
		conn, err := s.t.waitConn(context.Background())
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.t.cfg.Timeout)
		err = s.observe(ctx, conn, handover)
		cancel()
		if err == nil || errors.Is(err, transport.ErrClosed) {
			return
		}
		s.t.reportError(fmt.Errorf("coap: observing %q again: %w", s.filter, err))
		if !s.t.sleep(&backoff) {
			return
		}
	}
}
