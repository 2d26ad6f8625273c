package c2

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// AckFilter is the subscription on which C2 hears acknowledgements.
const AckFilter = e4.ControlTopicPrefix + "+" + e4.AckTopicSuffix

// awaiting remembers, per client, the commands sent and not yet
// acknowledged by the device, with what is needed to check an
// acknowledgement. It lives in memory only: after a restart the commands
// are simply sent again when their acknowledgement time runs out.
type awaiting struct {
	suite    *e4.Suite // the deployment's, which devices acknowledge under
	mu       sync.Mutex
	byClient map[e4.ID][]awaitedCommand
}

type awaitedCommand struct {
	id     store.CommandID
	key    []byte
	digest [e4.AckDigestLen]byte
}

func newAwaiting(suite *e4.Suite) *awaiting {
	return &awaiting{suite: suite, byClient: make(map[e4.ID][]awaitedCommand)}
}

// add records a command just sent; an earlier send of the same command is
// replaced, as only the newest copy is acknowledged.
func (a *awaiting) add(client e4.ID, cmd awaitedCommand) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.byClient[client]
	for i := range list {
		if list[i].id == cmd.id {
			list[i] = cmd
			return
		}
	}
	a.byClient[client] = append(list, cmd)
}

// match finds the command an acknowledgement from client is for, checking
// it with each candidate's key, and forgets it.
func (a *awaiting) match(client e4.ID, ack []byte, cfg *e4.Config) (store.CommandID, e4.AckStatus, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := a.byClient[client]
	for i, c := range list {
		digest, status, err := a.suite.OpenAck(ack, c.key, cfg)
		if err != nil || digest != c.digest {
			continue
		}
		list = append(list[:i], list[i+1:]...)
		if len(list) == 0 {
			delete(a.byClient, client)
		} else {
			a.byClient[client] = list
		}
		return c.id, status, true
	}
	return store.CommandID{}, 0, false
}

// listenAcks receives acknowledgements until ctx ends.
func (d *Dispatcher) listenAcks(ctx context.Context, sub transport.Subscription) {
	cfg := &e4.Config{Now: d.s.now}
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, transport.ErrClosed) {
				d.s.log.Warn("receiving acknowledgements", "err", err)
			}
			return
		}
		client, ok := ackSender(msg.Topic)
		if !ok {
			continue
		}
		id, status, ok := d.acks.match(client, msg.Payload, cfg)
		if !ok {
			d.unmatchedAcks.Add(1)
			continue
		}
		d.settleAck(ctx, client, id, status)
	}
}

func (d *Dispatcher) settleAck(ctx context.Context, client e4.ID, id store.CommandID, status e4.AckStatus) {
	if status == e4.AckRefused {
		reason := "the device refused the command"
		if err := d.acknowledge(ctx, id, reason); err != nil {
			d.s.log.Warn("recording a refused command", "err", err)
		}
		d.failed.Add(1)
		d.s.emit(Event{Kind: EventCommandFailed, Client: &client, Detail: reason})
		d.Wake()
		return
	}
	if err := d.acknowledge(ctx, id, ""); err != nil {
		d.s.log.Warn("recording an acknowledgement", "err", err)
		return
	}
	d.acked.Add(1)
	d.s.emit(Event{Kind: EventCommandSent, Client: &client, Detail: "acknowledged by the device"})
	d.Wake() // the client's next command may go now
}

// ackSender returns the client id in an acknowledgement topic.
func ackSender(topic string) (e4.ID, bool) {
	rest, ok := strings.CutPrefix(topic, e4.ControlTopicPrefix)
	if !ok {
		return e4.ID{}, false
	}
	hexID, ok := strings.CutSuffix(rest, e4.AckTopicSuffix)
	if !ok {
		return e4.ID{}, false
	}
	id, err := e4.ParseID(hexID)
	return id, err == nil
}

func (d *Dispatcher) acknowledge(ctx context.Context, id store.CommandID, refusal string) error {
	err := d.s.st.Acknowledge(ctx, id, d.s.now().UTC(), refusal)
	if errors.Is(err, store.ErrLeaseLost) {
		return nil // settled already: a duplicate acknowledgement
	}
	return err
}
