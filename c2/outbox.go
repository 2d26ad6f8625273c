package c2

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
)

// outgoing is a command about to be written to the outbox.
type outgoing struct {
	client store.Client
	cmd    []byte // the plain E4 command
	target string // topic name or client id it is about
	// key, when set, protects the command instead of the client's
	// current command key (a SetIDKey sent again under the key the device
	// still holds).
	key []byte
}

// enqueue seals each command with the key that will protect it and writes
// them to the outbox in order.
func (s *Service) enqueue(tx store.Tx, ev *events, out ...outgoing) error {
	cmds := make([]store.Command, 0, len(out))
	for _, o := range out {
		c, err := s.sealCommand(o)
		if err != nil {
			return err
		}
		cmds = append(cmds, c)
	}
	if err := tx.EnqueueCommands(cmds); err != nil {
		return err
	}
	ev.commands += len(cmds)
	return nil
}

// supersede marks the pending commands of kinds to client (every client
// when nil) about target superseded: a newer command makes them pointless.
func (s *Service) supersede(tx store.Tx, client *e4.ID, target string, kinds ...command.Code) error {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.String()
	}
	_, err := tx.SupersedeCommands(client, target, s.now().UTC(), names...)
	return err
}

func (s *Service) sealCommand(o outgoing) (store.Command, error) {
	var id store.CommandID
	if _, err := rand.Read(id[:]); err != nil {
		return store.Command{}, err
	}
	key := o.key
	if key == nil {
		var err error
		if key, err = s.commandKey(o.client); err != nil {
			return store.Command{}, fmt.Errorf("c2: command key of client %s: %w", o.client.ID, err)
		}
	}
	plain := make([]byte, 0, len(key)+len(o.cmd))
	plain = append(append(plain, key...), o.cmd...)
	sealed, err := s.keys.Seal(plain, commandBinding(id, o.client.ID))
	if err != nil {
		return store.Command{}, err
	}
	return store.Command{
		ID:            id,
		ClientID:      o.client.ID,
		Kind:          command.Code(o.cmd[0]).String(),
		Target:        o.target,
		SealedPayload: sealed,
		CreatedAt:     s.now().UTC(),
		NextAttemptAt: s.now().UTC(),
	}, nil
}

// openCommand returns the command key and the plain command of an outbox
// entry.
func (s *Service) openCommand(c store.Command) (key, cmd []byte, err error) {
	plain, err := s.keys.Open(c.SealedPayload, commandBinding(c.ID, c.ClientID))
	if err != nil {
		return nil, nil, err
	}
	if len(plain) <= e4.KeyLen {
		return nil, nil, fmt.Errorf("c2: outbox entry %x holds no command", c.ID[:])
	}
	return plain[:e4.KeyLen], plain[e4.KeyLen:], nil
}

// CommandStatus is what can be known of a queued command; it never holds
// the command's bytes.
type CommandStatus struct {
	ID        string
	Seq       int64
	Client    e4.ID
	Kind      string
	Target    string
	State     CommandState
	Attempts  int
	LastError string
	CreatedAt int64 // Unix milliseconds
	SentAt    int64 // Unix milliseconds, 0 unless sent
	// AckedAt is when the device acknowledged it (Unix milliseconds), 0
	// if it did not (devices that never acknowledge never do).
	AckedAt int64
}

func commandStatus(c store.Command) CommandStatus {
	st := CommandStatus{
		ID: hex.EncodeToString(c.ID[:]), Seq: c.Seq, Client: c.ClientID, Kind: c.Kind,
		Target: c.Target, State: CommandState(c.State), Attempts: c.Attempts, LastError: c.LastError,
		CreatedAt: c.CreatedAt.UnixMilli(),
	}
	if !c.SentAt.IsZero() {
		st.SentAt = c.SentAt.UnixMilli()
	}
	if !c.AckedAt.IsZero() {
		st.AckedAt = c.AckedAt.UnixMilli()
	}
	return st
}

// ParseCommandID parses the hex form of a command id.
func ParseCommandID(s string) (CommandID, error) {
	var id CommandID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: command id must be %d hex digits", ErrInvalidArgument, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

// Command returns the status of one command.
func (s *Service) Command(ctx context.Context, id CommandID) (CommandStatus, error) {
	var c store.Command
	err := s.view(ctx, func(tx store.Tx) (err error) {
		c, err = tx.GetCommand(store.CommandID(id))
		return err
	})
	return commandStatus(c), err
}

// Commands lists commands matching f after the given sequence number.
func (s *Service) Commands(ctx context.Context, f CommandFilter, afterSeq int64, limit int) ([]CommandStatus, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []store.Command
	err = s.view(ctx, func(tx store.Tx) (err error) {
		list, err = tx.ListCommands(f.storeFilter(), afterSeq, limit)
		return err
	})
	out := make([]CommandStatus, len(list))
	for i, c := range list {
		out[i] = commandStatus(c)
	}
	return out, err
}

// CountCommands counts commands matching f.
func (s *Service) CountCommands(ctx context.Context, f CommandFilter) (n int64, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		n, err = tx.CountCommands(f.storeFilter())
		return err
	})
	return n, err
}
