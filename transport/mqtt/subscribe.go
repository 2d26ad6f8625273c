package mqtt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/transport"
)

// resubscribeTimeout bounds the resubscription after a reconnect.
const resubscribeTimeout = 30 * time.Second

// suback failure return code (MQTT 3.1.1, 3.9.3).
const subackFailure = 0x80

// Subscribe starts receiving the messages whose topic matches filter. It
// returns once the broker has confirmed the broker subscription covering
// filter (or at once when an existing one already covers it).
func (t *Transport) Subscribe(ctx context.Context, filter string) (transport.Subscription, error) {
	if err := transport.ValidateFilter(filter); err != nil {
		return nil, err
	}
	if err := t.acquire(ctx); err != nil {
		return nil, fmt.Errorf("mqtt: subscribing to %q: %w", filter, err)
	}
	defer t.release()

	s := newSubscription(t, filter, t.queueSize, t.queueBytes)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	t.subs[s] = struct{}{}
	// Messages kept from a persistent session go first; later ones
	// follow, delivered directly (unrouted) or through s.pending.
	t.drainBacklogLocked(s)
	p := t.planLocked("")
	t.mu.Unlock()

	if err := t.apply(ctx, p); err != nil {
		t.mu.Lock()
		delete(t.subs, s)
		t.mu.Unlock()
		s.end()
		return nil, err
	}
	return s, nil
}

// forget removes an ended subscription and the broker subscription it no
// longer needs.
func (t *Transport) forget(ctx context.Context, s *Subscription) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	delete(t.subs, s)
	t.mu.Unlock()

	if err := t.acquire(ctx); err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return nil
		}
		return fmt.Errorf("mqtt: unsubscribing from %q: %w", s.filter, err)
	}
	defer t.release()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	p := t.planLocked(s.via)
	t.mu.Unlock()
	if err := t.apply(ctx, p); err != nil && !errors.Is(err, transport.ErrClosed) {
		return err
	}
	return nil
}

// acquire takes the right to change the broker subscriptions.
func (t *Transport) acquire(ctx context.Context) error {
	select {
	case t.ops <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
		return transport.ErrClosed
	}
}

func (t *Transport) release() { <-t.ops }

// plan is a change of the broker subscriptions.
type plan struct {
	target []string // the broker subscriptions after the change
	add    []string // to subscribe: in target, not in use now
	drop   []string // to unsubscribe: in use now, not in target
}

// planLocked computes the broker subscriptions the local ones need: a
// broker subscription no local one uses goes away, the one named dirty
// (which just lost a subscription) narrows to what its remaining ones
// need, and the filter of a new subscription (via "") joins the set.
func (t *Transport) planLocked(dirty string) plan {
	groups := make(map[string][]string)
	var fresh []string // filters of new subscriptions
	for s := range t.subs {
		if s.via == "" {
			fresh = append(fresh, s.filter)
		} else {
			groups[s.via] = append(groups[s.via], s.filter)
		}
	}
	var target []string
	for _, r := range t.remote {
		g := groups[r]
		switch {
		case len(g) == 0:
		case r != dirty || slices.Contains(g, r):
			target = append(target, r)
		default:
			target = append(target, mergeFilters(g)...)
		}
	}
	for _, f := range fresh {
		target, _ = addFilter(target, f)
	}
	slices.Sort(target)
	target = slices.Compact(target)
	for s := range t.subs {
		if s.via == "" {
			s.pending = coverOf(target, s.filter)
		}
	}
	return plan{target: target, add: without(target, t.remote), drop: without(t.remote, target)}
}

// without returns the members of a that are not in b.
func without(a, b []string) []string {
	var out []string
	for _, f := range a {
		if !slices.Contains(b, f) {
			out = append(out, f)
		}
	}
	return out
}

// apply carries out a plan: subscribe first, then move the local
// subscriptions over, then unsubscribe, so that no message is lost in the
// change (one may be delivered twice while both broker subscriptions
// exist, by a broker that sends one copy per subscription).
func (t *Transport) apply(ctx context.Context, p plan) error {
	if len(p.add) > 0 {
		if err := t.subscribeRemote(ctx, p.add); err != nil {
			t.mu.Lock()
			t.stale = append(without(t.stale, p.add), p.add...) // some may have been granted
			t.mu.Unlock()
			return err
		}
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return transport.ErrClosed
	}
	t.remote = p.target
	t.stale = without(append(t.stale, p.drop...), p.target)
	for s := range t.subs {
		switch {
		case s.via == "":
			s.via = s.pending
		case slices.Contains(p.drop, s.via):
			s.via = coverOf(p.add, s.filter)
		}
	}
	stale := slices.Clone(t.stale)
	t.mu.Unlock()
	t.unsubscribeStale(ctx, stale)
	return nil
}

// subscribeRemote subscribes at the broker, with a route per filter, and
// tries again after a reconnect if the connection drops meanwhile.
func (t *Transport) subscribeRemote(ctx context.Context, filters []string) error {
	want := make(map[string]byte, len(filters))
	for _, f := range filters {
		t.client.AddRoute(f, t.route(f))
		want[f] = subscribeQoS
	}
	for {
		if err := t.waitOpen(ctx); err != nil {
			return fmt.Errorf("mqtt: subscribing to %q: %w", filters, err)
		}
		tok := t.client.SubscribeMultiple(want, nil)
		err := t.wait(ctx, tok)
		if err != nil {
			if ctx.Err() == nil && !t.isClosed() && !t.client.IsConnectionOpen() {
				continue // the connection dropped: again once it is back
			}
			return fmt.Errorf("mqtt: subscribing to %q: %w", filters, err)
		}
		return refused(tok)
	}
}

// refused reports the filters a SUBACK refused.
func refused(tok paho.Token) error {
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	var bad []string
	for f, code := range st.Result() {
		if code == subackFailure {
			bad = append(bad, f)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	// An ACL denial: subscribing again is refused again.
	return transport.Permanent(fmt.Errorf("%w: %q", ErrSubscriptionRefused, bad))
}

// unsubscribeStale removes broker subscriptions no longer used, as far as
// the connection and ctx allow; what remains is tried again later.
func (t *Transport) unsubscribeStale(ctx context.Context, stale []string) {
	if len(stale) == 0 || !t.client.IsConnectionOpen() {
		return
	}
	if err := t.wait(ctx, t.client.Unsubscribe(stale...)); err != nil {
		return
	}
	t.mu.Lock()
	t.stale = without(t.stale, stale)
	t.mu.Unlock()
}

// resubscribe subscribes again to every broker subscription in use, after
// each (re)connect: a clean session, or a broker restarted without its
// persistent sessions, has forgotten them.
func (t *Transport) resubscribe() {
	ctx, cancel := context.WithTimeout(context.Background(), resubscribeTimeout)
	defer cancel()
	if t.acquire(ctx) != nil {
		return
	}
	defer t.release()
	t.mu.Lock()
	remote, stale := slices.Clone(t.remote), slices.Clone(t.stale)
	t.mu.Unlock()
	if len(remote) > 0 {
		want := make(map[string]byte, len(remote))
		for _, f := range remote {
			want[f] = subscribeQoS
		}
		// On failure the connection is gone again, and the next
		// connect calls resubscribe again.
		_ = t.wait(ctx, t.client.SubscribeMultiple(want, nil))
	}
	t.unsubscribeStale(ctx, stale)
}

// route returns paho's handler for the broker subscription remote: it
// hands each message to the local subscriptions that take remote's
// messages and match the topic.
func (t *Transport) route(remote string) paho.MessageHandler {
	return func(_ paho.Client, m paho.Message) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.refuseLocked(m.Topic(), m.Payload(), remote) {
			return
		}
		t.deliverLocked(m.Topic(), m.Payload(), remote)
	}
}

// unrouted handles messages that match no broker subscription of this
// connection yet: those a persistent session receives on connect, before
// the application subscribes again.
func (t *Transport) unrouted(_ paho.Client, m paho.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.refuseLocked(m.Topic(), m.Payload(), "") || t.deliverLocked(m.Topic(), m.Payload(), "") {
		return
	}
	if t.keepBacklog && len(t.backlog) < backlogLimit {
		t.backlog = append(t.backlog, &transport.Message{Topic: m.Topic(), Payload: m.Payload()})
	}
}

// deliverLocked queues a message for every local subscription matching
// topic that takes the messages of the broker subscription remote ("" for
// a message no route took: every subscription). Each gets its own
// payload: copies are made before any receiver can touch the original.
func (t *Transport) deliverLocked(topic string, payload []byte, remote string) bool {
	var to []*Subscription
	for s := range t.subs {
		if s.takes(remote) && transport.Match(s.filter, topic) {
			to = append(to, s)
		}
	}
	for i, s := range to {
		p := payload
		if i < len(to)-1 {
			p = slices.Clone(payload)
		}
		s.push(&transport.Message{Topic: topic, Payload: p})
	}
	return len(to) > 0
}

// refuseLocked reports a message refused for its size: the empty
// replacement of one limitedConn emptied, or (on a FromClient client,
// which reads whole messages) one over the limit. It is counted, and
// counted as dropped by every subscription it would have gone to.
func (t *Transport) refuseLocked(topic string, payload []byte, remote string) bool {
	if !t.oversized.take(topic, payload) && (t.maxMessage <= 0 || len(payload) <= t.maxMessage) {
		return false
	}
	t.refused.Add(1)
	for s := range t.subs {
		if s.takes(remote) && transport.Match(s.filter, topic) {
			s.in.CountDrop()
		}
	}
	return true
}

// drainBacklogLocked moves the kept messages matching s into s.
func (t *Transport) drainBacklogLocked(s *Subscription) {
	kept := t.backlog[:0]
	for _, m := range t.backlog {
		if transport.Match(s.filter, m.Topic) {
			s.push(m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(t.backlog[len(kept):])
	t.backlog = kept
}
