package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// protectedSubscription unprotects what the inner subscription receives.
// Messages that await a key (see ProtectOptions.AwaitKey) are held aside
// while the next ones keep flowing.
type protectedSubscription struct {
	inner Subscription
	p     *Protected

	mu        sync.Mutex // guards held and heldBytes
	held      []*heldMessage
	heldBytes int
}

// heldMessage is a message set aside until a command brings its key.
type heldMessage struct {
	msg      *Message
	err      error     // why it could not be read the last time
	triedGen uint64    // the key generation it was last tried under
	deadline time.Time // when it is dropped
}

// Receive returns the next message that unprotects correctly; the others
// are dropped and reported, or held for a key. Messages on the client's
// own control topic (matched by a wide filter) are commands, applied by the
// control subscription, and are skipped here, as are the client's own
// acknowledgements and sync requests below it.
func (s *protectedSubscription) Receive(ctx context.Context) (*Message, error) {
	for {
		if msg := s.releaseHeld(); msg != nil {
			return msg, nil
		}
		msg, err := s.receiveInner(ctx)
		if err != nil {
			return nil, err
		}
		if msg == nil || s.ownProtocolTopic(msg.Topic) {
			continue // woken to look at the held messages, or not for us
		}
		gen, _ := s.p.keyGeneration()
		plain, err := s.unprotectInPlace(msg)
		switch {
		case err == nil:
			msg.Payload = plain
			return msg, nil
		case errors.Is(err, e4.ErrTopicKeyNotFound) && s.p.opts.DeliverUnkeyed:
			return msg, nil
		case awaitsKey(err) && s.p.opts.AwaitKey > 0:
			s.hold(msg, err, gen)
		default:
			s.p.drop(msg.Topic, err)
		}
	}
}

// ownProtocolTopic reports the client's control topic and the topics below
// it (its acknowledgements and sync requests): E4 protocol traffic, which
// a wide filter matches but which is not the application's.
func (s *protectedSubscription) ownProtocolTopic(topic string) bool {
	control := s.p.client.ControlTopic()
	return topic == control || (len(topic) > len(control) && topic[len(control)] == '/' && topic[:len(control)] == control)
}

// receiveInner waits for the next message of the inner subscription. While
// messages are held it also wakes, returning nil, nil, when a command is
// applied or the first held message's time is up.
func (s *protectedSubscription) receiveInner(ctx context.Context) (*Message, error) {
	deadline, holding := s.nextDeadline()
	if !holding {
		return s.inner.Receive(ctx)
	}
	_, keysChanged := s.p.keyGeneration()
	wait, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(keysChanged, cancel)
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
func (s *protectedSubscription) hold(msg *Message, err error, gen uint64) {
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
// unprotects. Held messages whose time is up are dropped and reported.
func (s *protectedSubscription) releaseHeld() *Message {
	gen, _ := s.p.keyGeneration()
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
				return h.msg
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
	return nil
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
func (s *protectedSubscription) unprotectInPlace(msg *Message) ([]byte, error) {
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

// Unsubscribe ends the subscription and forgets the held messages.
func (s *protectedSubscription) Unsubscribe(ctx context.Context) error {
	s.mu.Lock()
	clear(s.held)
	s.held, s.heldBytes = nil, 0
	s.mu.Unlock()
	return s.inner.Unsubscribe(ctx)
}
