package amqp

import (
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/transport"
)

// The supervisor is the one goroutine that creates and removes queues and
// consumers, and reconnects: serialising them keeps a reconnection from
// racing a Subscribe, and keeps synchronous AMQP calls on one channel from
// overlapping (a channel answers them in order).

type requestKind int

const (
	subscribeRequest requestKind = iota
	unsubscribeRequest
	// consumerLostRequest: a subscription's deliveries stopped while it
	// was live.
	consumerLostRequest
)

// request asks the supervisor to act for a subscription.
type request struct {
	kind  requestKind
	sub   *subscription
	att   *attachment // consumerLostRequest: the attachment that ended
	reply chan error  // buffered; unused for consumerLostRequest
}

// attachment is a subscription's queue and consumer on one session.
type attachment struct {
	sess  *session
	ch    *amqp091.Channel
	queue string
	tag   string
}

type supervisor struct {
	t    *Transport
	sess *session
	// subs are the live subscriptions, restored on every reconnection.
	subs map[*subscription]struct{}
}

// run serves requests and watches the session until Close, or until a
// FromChannel transport loses its channel.
func (t *Transport) run(sess *session) {
	defer close(t.done)
	sv := &supervisor{t: t, sess: sess, subs: make(map[*subscription]struct{})}
	if sess == nil && !sv.reconnect(true) {
		sv.shutdown()
		return
	}
	for {
		select {
		case req := <-t.requests:
			sv.handle(req)
		case <-sv.sess.lost:
			if !sv.recover() {
				sv.shutdown()
				return
			}
		case <-t.closing:
			sv.shutdown()
			return
		}
	}
}

func (sv *supervisor) handle(req request) {
	switch req.kind {
	case subscribeRequest:
		sv.subscribe(req)
	case unsubscribeRequest:
		delete(sv.subs, req.sub)
		req.reply <- sv.detach(req.sub)
	case consumerLostRequest:
		sv.consumerLost(req.sub, req.att)
	}
}

// subscribe attaches a new subscription. If the connection was lost
// meanwhile, the reply waits for the reconnection, which attaches it.
func (sv *supervisor) subscribe(req request) {
	s := req.sub
	if s.isEnded() {
		req.reply <- transport.ErrClosed
		return
	}
	err := sv.attach(sv.sess, s)
	switch {
	case err == nil:
		sv.subs[s] = struct{}{}
		req.reply <- nil
	case sv.t.connect != nil && sessionDead(sv.sess):
		sv.subs[s] = struct{}{}
		s.pending = req.reply
	default:
		req.reply <- err
	}
}

// consumerLost re-creates a subscription whose consumer the broker
// cancelled (e.g. its queue was deleted) or whose channel it closed, on a
// connection that is still up. A lost connection is recover's business.
func (sv *supervisor) consumerLost(s *subscription, att *attachment) {
	if _, live := sv.subs[s]; !live || s.att != att || s.isEnded() || sessionDead(sv.sess) {
		return
	}
	s.att = nil
	if err := sv.attach(sv.sess, s); err == nil {
		return
	}
	if sv.t.connect != nil {
		// Start over: recover re-creates every subscription.
		sv.sess.close()
		return
	}
	delete(sv.subs, s)
	s.end()
}

// sessionDead reports a session whose connection or channel is gone, even
// before watch has marked it lost.
func sessionDead(sess *session) bool {
	return sess.isLost() || sess.pub.IsClosed() || (sess.conn != nil && sess.conn.IsClosed())
}

// attach creates the subscription's queue, binding and consumer on sess:
// on a channel of its own for Dial, on the application's channel for
// FromChannel.
func (sv *supervisor) attach(sess *session, s *subscription) error {
	t := sv.t
	ch := sess.pub
	if t.set.ownsChannels {
		var err error
		if ch, err = sess.conn.Channel(); err != nil {
			return fmt.Errorf("amqp: opening a channel: %w", err)
		}
		if err := ch.Qos(t.set.prefetch, 0, false); err != nil {
			_ = ch.Close()
			return fmt.Errorf("amqp: setting prefetch: %w", err)
		}
	}
	att, deliveries, err := t.consumeQueue(ch, s.key)
	if err != nil {
		if t.set.ownsChannels {
			_ = ch.Close()
		}
		return err
	}
	att.sess = sess
	s.att = att
	go s.consume(att, deliveries)
	return nil
}

// consumeQueue declares an exclusive, auto-delete, server-named queue,
// binds it with key and consumes it with manual acknowledgements.
func (t *Transport) consumeQueue(ch *amqp091.Channel, key string) (*attachment, <-chan amqp091.Delivery, error) {
	q, err := ch.QueueDeclare("", false, true, true, false, t.set.queueArgs)
	if err != nil {
		return nil, nil, fmt.Errorf("amqp: declaring a queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, key, t.set.exchange, false, nil); err != nil {
		return nil, nil, fmt.Errorf("amqp: binding a queue to %q with %q: %w", t.set.exchange, key, err)
	}
	tag := t.nextTag()
	deliveries, err := ch.Consume(q.Name, tag, false, true, false, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("amqp: consuming %s: %w", q.Name, err)
	}
	return &attachment{ch: ch, queue: q.Name, tag: tag}, deliveries, nil
}

// detach removes the subscription's consumer; its auto-delete queue goes
// with it. Nothing is left to remove on a dead session.
func (sv *supervisor) detach(s *subscription) error {
	att := s.att
	s.att = nil
	if att == nil || sessionDead(att.sess) {
		return nil
	}
	var err error
	if sv.t.set.ownsChannels {
		err = att.ch.Close()
	} else {
		err = att.ch.Cancel(att.tag, false)
	}
	if err != nil && !errors.Is(err, amqp091.ErrClosed) {
		return fmt.Errorf("amqp: cancelling consumer %s: %w", att.tag, err)
	}
	return nil
}

// recover replaces a lost session: it reconnects with backoff and
// restores every live subscription before publishers may use the new
// session. It returns false on Close, or for FromChannel, which cannot
// reconnect.
func (sv *supervisor) recover() bool {
	t := sv.t
	lost := sv.sess
	for s := range sv.subs {
		s.att = nil
	}
	if t.set.onLost != nil {
		t.set.onLost(lost.lostErr)
	}
	t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: lost.lostErr})
	if t.connect == nil {
		err := ErrChannelClosed
		if lost.lostErr != nil {
			err = fmt.Errorf("%w: %v", ErrChannelClosed, lost.lostErr)
		}
		t.setBroken(err)
		return false
	}
	return sv.reconnect(false)
}

// reconnect connects with backoff and restores every live subscription
// before publishers may use the new session. first is the first
// connection of a ConnectRetry Dial, whose first failure is reported as a
// Disconnected event. It returns false on Close.
func (sv *supervisor) reconnect(first bool) bool {
	t := sv.t
	delay := t.set.minBackoff
	for failures := 0; ; failures++ {
		sess, err := t.connect()
		if err == nil {
			if err = sv.attachAll(sess); err == nil && t.publishSession(sess) {
				sv.sess = sess
				sv.replyPending()
				if t.set.onReconnect != nil && !first {
					t.set.onReconnect()
				}
				t.listeners.Emit(transport.ConnectionEvent{State: transport.Connected})
				return true
			}
			sess.close()
		}
		if first && failures == 0 && err != nil {
			t.listeners.Emit(transport.ConnectionEvent{State: transport.Disconnected, Err: err})
		}
		if !sv.backoff(delay) {
			return false
		}
		delay = min(delay*2, t.set.maxBackoff)
	}
}

// attachAll restores the live subscriptions on a new session.
func (sv *supervisor) attachAll(sess *session) error {
	for s := range sv.subs {
		if s.isEnded() {
			delete(sv.subs, s)
			continue
		}
		if err := sv.attach(sess, s); err != nil {
			return err
		}
	}
	return nil
}

// replyPending completes the Subscribe calls that waited for a connection.
func (sv *supervisor) replyPending() {
	for s := range sv.subs {
		if s.pending != nil {
			s.pending <- nil
			s.pending = nil
		}
	}
}

// backoff waits d between reconnection attempts, taking requests
// meanwhile so that Unsubscribe does not wait for the broker. It returns
// false on Close.
func (sv *supervisor) backoff(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-sv.t.closing:
			return false
		case req := <-sv.t.requests:
			sv.handleOffline(req)
		}
	}
}

// handleOffline serves a request while disconnected.
func (sv *supervisor) handleOffline(req request) {
	s := req.sub
	switch req.kind {
	case subscribeRequest:
		if s.isEnded() {
			req.reply <- transport.ErrClosed
			return
		}
		sv.subs[s] = struct{}{}
		s.pending = req.reply
	case unsubscribeRequest:
		delete(sv.subs, s)
		s.att = nil
		req.reply <- nil
	case consumerLostRequest:
		// Stale: every attachment died with the connection.
	}
}

// shutdown ends every subscription. A Dial transport closes its
// connection; a FromChannel transport cancels its consumers and leaves the
// application's channel open.
func (sv *supervisor) shutdown() {
	reason := transport.ErrClosed
	if !sv.t.isClosed() {
		sv.t.mu.Lock()
		reason = sv.t.broken
		sv.t.mu.Unlock()
	}
	for s := range sv.subs {
		s.end()
		if s.pending != nil {
			s.pending <- reason
			s.pending = nil
		}
		if !sv.t.set.ownsChannels {
			_ = sv.detach(s)
		}
	}
	if sv.t.set.ownsChannels && sv.sess != nil {
		sv.sess.close()
	}
}
