package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// EventLost is the kind of the event a resumed stream starts with when
// some of the events asked for are no longer buffered (or were emitted by
// an earlier run of C2): the subscriber should re-read the state it
// tracks.
const EventLost = "events_lost"

// DefaultEventBuffer is how many events a hub keeps for late subscribers.
const DefaultEventBuffer = 10000

// subscriberQueue is how many events may wait for a slow subscriber before
// it is cut off (it can resume from its last event id).
const subscriberQueue = 1024

// EventHub keeps the recent events of the service, numbered, and fans
// them out to subscribers. Pass its Publish method as c2.Config.OnEvent.
// Event ids are "RUN-SEQ": RUN is random per hub, so an id from before a
// restart is recognized as such.
type EventHub struct {
	run string

	mu     sync.Mutex
	next   uint64        // sequence number of the next event
	ring   []*c2pb.Event // the last len(ring) events, oldest first after start
	start  int           // index of the oldest event in ring
	count  int           // events in ring
	oldest uint64        // sequence number of ring[start]
	subs   map[*Subscription]struct{}
}

// NewEventHub returns a hub that keeps the last size events (size <= 0
// means DefaultEventBuffer).
func NewEventHub(size int) *EventHub {
	if size <= 0 {
		size = DefaultEventBuffer
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &EventHub{run: hex.EncodeToString(b[:]), next: 1, oldest: 1, ring: make([]*c2pb.Event, size), subs: make(map[*Subscription]struct{})}
}

// Publish numbers an event, buffers it and hands it to the subscribers.
// It never blocks: a subscriber that does not keep up is cut off.
func (h *EventHub) Publish(e c2.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pe := h.convert(e, h.next)
	h.next++
	if h.count == len(h.ring) {
		h.ring[h.start] = pe
		h.start = (h.start + 1) % len(h.ring)
		h.oldest++
	} else {
		h.ring[(h.start+h.count)%len(h.ring)] = pe
		h.count++
	}
	for sub := range h.subs {
		select {
		case sub.ch <- pe:
		default:
			sub.overflowed = true
			delete(h.subs, sub)
			close(sub.ch)
		}
	}
}

func (h *EventHub) convert(e c2.Event, seq uint64) *c2pb.Event {
	pe := &c2pb.Event{Id: h.run + "-" + strconv.FormatUint(seq, 10), Kind: string(e.Kind), Topic: e.Topic, Detail: e.Detail}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	pe.Time = timestamppb.New(e.Time)
	if e.Client != nil {
		pe.ClientId = e.Client.String()
	}
	return pe
}

// parseEventID returns the sequence number of an id of this run, or
// ok=false for an id of another run.
func (h *EventHub) parseEventID(id string) (seq uint64, ok bool, err error) {
	run, num, found := strings.Cut(id, "-")
	if !found || run == "" {
		return 0, false, fmt.Errorf("event id %q is not of the form RUN-SEQ", clip(id, 80))
	}
	seq, err = strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("event id %q is not of the form RUN-SEQ", clip(id, 80))
	}
	return seq, run == h.run, nil
}

// after returns the buffered events after id (all of them for ""), at
// most limit (0: no limit), led by an EventLost event when some are gone.
// The caller holds mu.
func (h *EventHub) after(id string, limit int) ([]*c2pb.Event, error) {
	from := h.oldest // first sequence number to return
	var lost *c2pb.Event
	if id != "" {
		seq, thisRun, err := h.parseEventID(id)
		if err != nil {
			return nil, err
		}
		switch {
		case thisRun && seq >= h.next:
			return nil, fmt.Errorf("event id %q is ahead of the last event", clip(id, 80))
		case thisRun && seq+1 >= h.oldest:
			from = seq + 1
		default:
			lost = &c2pb.Event{Id: id, Kind: EventLost, Time: timestamppb.Now(),
				Detail: fmt.Sprintf("events after %s are no longer buffered; the stream goes on from the oldest one kept", clip(id, 80))}
		}
	}
	var out []*c2pb.Event
	if lost != nil {
		out = append(out, lost)
	}
	for seq := from; seq < h.next; seq++ {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, h.ring[(h.start+int(seq-h.oldest))%len(h.ring)])
	}
	return out, nil
}

// List returns the buffered events after id, at most limit.
func (h *EventHub) List(id string, limit int) ([]*c2pb.Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.after(id, limit)
}

// Subscription receives the events published after it was made.
type Subscription struct {
	h          *EventHub
	ch         chan *c2pb.Event
	overflowed bool // set (under h.mu) when the hub cut it off
}

// Subscribe returns the buffered events after id (none when id is "")
// and a subscription to those that follow, with nothing lost or repeated
// between the two.
func (h *EventHub) Subscribe(id string) ([]*c2pb.Event, *Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var backlog []*c2pb.Event
	if id != "" {
		var err error
		if backlog, err = h.after(id, 0); err != nil {
			return nil, nil, err
		}
	}
	sub := &Subscription{h: h, ch: make(chan *c2pb.Event, subscriberQueue)}
	h.subs[sub] = struct{}{}
	return backlog, sub, nil
}

// Events is the channel of new events; it is closed when the subscriber
// was cut off for not keeping up (see Overflowed) or by Close.
func (s *Subscription) Events() <-chan *c2pb.Event { return s.ch }

// Overflowed reports whether the hub cut the subscription off.
func (s *Subscription) Overflowed() bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.overflowed
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if _, ok := s.h.subs[s]; ok {
		delete(s.h.subs, s)
		close(s.ch)
	}
}
