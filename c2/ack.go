package c2

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport"
)

// AckFilter is the subscription on which C2 hears acknowledgements.
const AckFilter = e4.ControlTopicPrefix + "+" + e4.AckTopicSuffix

// maxAwaitedPerClient bounds the sent commands remembered per client: an
// acknowledgement only matters for the newest few.
const maxAwaitedPerClient = 16

// awaiting remembers, per client, the commands sent and not yet
// acknowledged by the device, with what is needed to check an
// acknowledgement and to learn from it. It lives in memory only: after a
// restart an acknowledgement that matches nothing is counted and ignored,
// and the repair sends what is still missing.
type awaiting struct {
	suite    *e4.Suite // the deployment's, which devices acknowledge under
	mu       sync.Mutex
	byClient map[e4.ID][]awaitedCommand
	total    int
}

// maxAwaited bounds the sent commands remembered in all: beyond it new
// ones are not remembered and their acknowledgements count as unmatched
// (the repair covers what they would have told).
const maxAwaited = 1 << 18

// awaitedCommand is one protected copy of a command as sent.
type awaitedCommand struct {
	id     store.CommandID
	key    []byte
	digest [e4.AckDigestLen]byte
	sentAt time.Time
	// underPrev, underCurrent: protected under the key the device held
	// before a key change, or under the key after it, during the change.
	underPrev, underCurrent bool
	kind                    command.Code
	target                  string
	// topicKey is the tag of the key a SetTopicKey carries.
	topicKey e4.KeyTag
	// publicKey is the key a SetPubKey (of source) or a SetC2Key carries.
	publicKey []byte
	source    e4.ID
}

func newAwaited(c store.Command, cmd []byte, k sendKey, protected []byte, now time.Time) awaitedCommand {
	a := awaitedCommand{
		id: c.ID, key: k.key, digest: e4.CommandDigest(protected), sentAt: now,
		underPrev: k.prev, underCurrent: k.current, kind: command.Code(cmd[0]), target: c.Target,
	}
	switch {
	case a.kind == command.SetTopicKey && len(cmd) > e4.KeyLen:
		a.topicKey = e4.TagOfKey(cmd[1 : 1+e4.KeyLen])
	case a.kind == command.SetPubKey && len(cmd) == 1+ed25519.PublicKeySize+len(a.source):
		a.publicKey = slices.Clone(cmd[1 : 1+ed25519.PublicKeySize])
		a.source = e4.ID(cmd[1+ed25519.PublicKeySize:])
	case a.kind == command.SetC2Key && len(cmd) == 1+e4.KeyLen:
		a.publicKey = slices.Clone(cmd[1:])
	}
	return a
}

func newAwaiting(suite *e4.Suite) *awaiting {
	return &awaiting{suite: suite, byClient: make(map[e4.ID][]awaitedCommand)}
}

// add records a command just sent, forgetting the oldest beyond
// maxAwaitedPerClient.
func (a *awaiting) add(client e4.ID, cmd awaitedCommand) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.byClient[client]
	if len(list) < maxAwaitedPerClient && a.total >= maxAwaited {
		return
	}
	list = append(list, cmd)
	a.total++
	if len(list) > maxAwaitedPerClient {
		list = append(list[:0:0], list[len(list)-maxAwaitedPerClient:]...)
		a.total--
	}
	a.byClient[client] = list
}

// match finds the command an acknowledgement from client is for, checking
// it with each candidate's key, and forgets it.
func (a *awaiting) match(client e4.ID, ack []byte, cfg *e4.Config) (awaitedCommand, e4.AckStatus, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.byClient[client]
	for i := len(list) - 1; i >= 0; i-- {
		c := list[i]
		digest, status, err := a.suite.OpenAck(ack, c.key, cfg)
		if err != nil || digest != c.digest {
			continue
		}
		list = append(list[:i], list[i+1:]...)
		a.total--
		if len(list) == 0 {
			delete(a.byClient, client)
		} else {
			a.byClient[client] = list
		}
		return c, status, true
	}
	return awaitedCommand{}, 0, false
}

// forgetBefore drops the commands sent before t.
func (a *awaiting) forgetBefore(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for client, list := range a.byClient {
		kept := list[:0]
		for _, c := range list {
			if !c.sentAt.Before(t) {
				kept = append(kept, c)
			}
		}
		a.total -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(a.byClient, client)
		} else {
			a.byClient[client] = kept
		}
	}
}

// matchedAck is an acknowledgement matched to the command it answers.
type matchedAck struct {
	client e4.ID
	cmd    awaitedCommand
	status e4.AckStatus
}

// ackQueue bounds the matched acknowledgements waiting to be recorded; a
// full queue drops them (counted as unmatched): the repair covers what they
// would have told.
const ackQueue = 1 << 16

// ackBatch is the most acknowledgements recorded in one transaction.
const ackBatch = 256

// listenAcks receives acknowledgements until ctx ends and hands those
// that match a command to recordAcks.
func (d *Dispatcher) listenAcks(ctx context.Context, sub transport.Subscription, matched chan<- matchedAck) {
	defer close(matched)
	cfg := &e4.Config{Now: d.s.now}
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, transport.ErrClosed) {
				d.s.log.Warn("receiving acknowledgements", "err", err)
			}
			return
		}
		client, ok := clientOfTopic(msg.Topic, e4.AckTopicSuffix)
		if !ok {
			continue
		}
		cmd, status, ok := d.acks.match(client, msg.Payload, cfg)
		if !ok {
			d.unmatchedAcks.Add(1)
			continue
		}
		select {
		case matched <- matchedAck{client: client, cmd: cmd, status: status}:
		default:
			d.unmatchedAcks.Add(1)
		}
	}
}

// recordAcks records matched acknowledgements, those waiting together in
// one transaction, until matched is closed.
func (d *Dispatcher) recordAcks(ctx context.Context, matched <-chan matchedAck) {
	for first := range matched {
		batch := []matchedAck{first}
	more:
		for len(batch) < ackBatch {
			select {
			case a, ok := <-matched:
				if !ok {
					break more
				}
				batch = append(batch, a)
			default:
				break more
			}
		}
		d.settleAcks(ctx, batch)
	}
}

// settleAcks records devices' answers on their commands and in their
// state.
func (d *Dispatcher) settleAcks(ctx context.Context, batch []matchedAck) {
	if err := d.s.learnFromAcks(ctx, batch); err != nil && ctx.Err() == nil {
		d.s.log.Warn("recording devices' state from acknowledgements", "count", len(batch), "err", err)
	}
	events := make([]Event, 0, len(batch))
	for _, a := range batch {
		client := a.client
		if a.status == e4.AckRefused {
			d.failed.Add(1)
			events = append(events, Event{Kind: EventCommandFailed, Client: &client, Topic: a.cmd.target, Detail: "the device refused the command"})
			continue
		}
		d.acked.Add(1)
		if a.cmd.kind == command.SetTopicKey {
			d.watch.touch(a.cmd.target)
		}
		events = append(events, Event{Kind: EventCommandAcked, Client: &client, Topic: topicOfKind(a.cmd.kind, a.cmd.target), Detail: a.cmd.kind.String()})
	}
	d.s.emit(events...)
}

// learnFromAcks updates what C2 knows of devices from their
// acknowledgements: they acknowledge, they were seen, which client key
// they hold, and which topic key version.
func (s *Service) learnFromAcks(ctx context.Context, batch []matchedAck) error {
	now := s.now().UTC()
	return s.update(ctx, func(tx store.Tx, ev *events) error {
		topics := make(topicTags)
		for _, a := range batch {
			refusal := ""
			if a.status == e4.AckRefused {
				refusal = "the device refused the command"
			}
			err := tx.AcknowledgeCommand(a.cmd.id, now, refusal)
			if err != nil && !errors.Is(err, store.ErrLeaseLost) && !errors.Is(err, store.ErrNotFound) {
				return err // lost or unknown: a duplicate, or settled already
			}
			err = s.learnFromAck(tx, ev, a, topics, now)
			if err != nil && !errors.Is(err, store.ErrNotFound) { // a client removed meanwhile
				return err
			}
		}
		return nil
	})
}

func (s *Service) learnFromAck(tx store.Tx, ev *events, a matchedAck, topics topicTags, now time.Time) error {
	ds, err := tx.GetDeviceState(a.client)
	if err != nil {
		return err
	}
	ds.AcksSeen, ds.LastSeen, ds.StalledReason, ds.StalledAt = true, now, "", time.Time{}
	if ds.PrevSealedKey != nil {
		if err := s.learnKeyFromAck(tx, ev, &ds, a.cmd, a.status); err != nil {
			return err
		}
	}
	if s.prevPK != nil && a.cmd.kind != command.SetC2Key && (a.cmd.underCurrent || (a.cmd.underPrev && !a.cmd.sentAt.Before(s.prevPK.rotatedAt))) {
		c, err := getClient(tx, a.client)
		if err != nil {
			return err
		}
		if err := s.learnC2Key(tx, ev, &ds, c, a.cmd.underPrev); err != nil {
			return err
		}
	}
	if a.status == e4.AckApplied {
		if err := s.recordItemAck(tx, &ds, a, topics, now); err != nil {
			return err
		}
	}
	return tx.PutDeviceState(ds)
}

// recordItemAck records the item an applied command gave the device: a
// topic key version, a linked client's public key, the C2 key.
func (s *Service) recordItemAck(tx store.Tx, ds *store.DeviceState, a matchedAck, topics topicTags, now time.Time) error {
	switch a.cmd.kind {
	case command.SetTopicKey:
		return s.recordTopicAck(tx, a.client, a.cmd.target, a.cmd.topicKey, topics, now)
	case command.SetPubKey:
		err := tx.SetLinkAcked(a.cmd.source, a.client, a.cmd.publicKey, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil // sent outside a link
		}
		return err
	case command.SetC2Key:
		ds.C2KeyAcked = a.cmd.publicKey
	}
	return nil
}

// learnKeyFromAck updates a pending client-key change from an
// acknowledgement: the device acknowledges under the key that opened the
// command. An applied SetIDKey, or any command under the new key, confirms
// the change; another command under the previous key shows the device
// missed the SetIDKey. An acknowledgement under neither, or of a command
// sent before the change, tells nothing.
func (s *Service) learnKeyFromAck(tx store.Tx, ev *events, ds *store.DeviceState, cmd awaitedCommand, status e4.AckStatus) error {
	c, err := getClient(tx, ds.ClientID)
	if err != nil {
		return err
	}
	k, err := s.openKeyChange(c, *ds)
	if err != nil {
		return err
	}
	switch {
	case cmd.kind == command.SetIDKey && status == e4.AckApplied && bytes.Equal(cmd.key, k.prev):
		return s.learnKeyInUse(tx, ev, ds, false)
	case bytes.Equal(cmd.key, k.current):
		return s.learnKeyInUse(tx, ev, ds, false)
	case bytes.Equal(cmd.key, k.prev) && cmd.kind != command.SetIDKey && !cmd.sentAt.Before(ds.KeyChangedAt):
		return s.learnKeyInUse(tx, ev, ds, true)
	}
	return nil
}

// topicTags caches, for one transaction, the current version of topics
// and the tag of their current key.
type topicTags map[string]topicTag

type topicTag struct {
	version uint64
	tag     e4.KeyTag
	gone    bool
}

// current returns the version and key tag of topic, gone if it was
// deleted.
func (m topicTags) current(s *Service, tx store.Tx, topic string) (topicTag, error) {
	if t, ok := m[topic]; ok {
		return t, nil
	}
	t, err := tx.GetTopic(topic)
	if errors.Is(err, store.ErrNotFound) {
		m[topic] = topicTag{gone: true}
		return m[topic], nil
	}
	if err != nil {
		return topicTag{}, err
	}
	key, err := s.topicKey(t)
	if err != nil {
		return topicTag{}, err
	}
	m[topic] = topicTag{version: t.KeyVersion, tag: e4.TagOfKey(key)}
	return m[topic], nil
}

// recordTopicAck records that a device holds the key tagged tag of topic:
// its current version if it is the current key (an older key tells
// nothing new).
func (s *Service) recordTopicAck(tx store.Tx, client e4.ID, topic string, tag e4.KeyTag, topics topicTags, now time.Time) error {
	cur, err := topics.current(s, tx, topic)
	if err != nil || cur.gone || cur.tag != tag {
		return err
	}
	err = tx.SetTopicAcked(client, topic, cur.version, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil // no longer a member
	}
	return err
}

// clientOfTopic returns the client id in a topic e4/<id><suffix>.
func clientOfTopic(topic, suffix string) (e4.ID, bool) {
	rest, ok := strings.CutPrefix(topic, e4.ControlTopicPrefix)
	if !ok {
		return e4.ID{}, false
	}
	hexID, ok := strings.CutSuffix(rest, suffix)
	if !ok {
		return e4.ID{}, false
	}
	id, err := e4.ParseID(hexID)
	return id, err == nil
}

// topicOfKind returns target when a command of kind is about a topic.
func topicOfKind(kind command.Code, target string) string {
	if kind == command.SetTopicKey || kind == command.RemoveTopic {
		return target
	}
	return ""
}
