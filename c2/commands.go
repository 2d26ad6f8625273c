package c2

import (
	"encoding/hex"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// CommandID identifies a queued command (an outbox entry). It has the
// value of the store's id; c2 has its own type so that callers of the
// Service need not import c2/store.
type CommandID [16]byte

// String gives the id in hex, the form ParseCommandID reads.
func (id CommandID) String() string { return hex.EncodeToString(id[:]) }

// CommandState is the delivery state of a queued command.
type CommandState string

// The states of a queued command. Pending covers both "waiting" and "being
// sent"; Superseded is a command a newer one of the same kind replaced
// before it was sent.
const (
	CommandPending    CommandState = CommandState(store.CommandPending)
	CommandSent       CommandState = CommandState(store.CommandSent)
	CommandFailed     CommandState = CommandState(store.CommandFailed)
	CommandSuperseded CommandState = CommandState(store.CommandSuperseded)
)

// CommandFilter selects queued commands; a zero field matches any value.
type CommandFilter struct {
	Client *e4.ID       // only the commands for this client
	State  CommandState // only the commands in this state
	Target string       // only the commands about this topic or client
}

// storeFilter translates f for the store.
func (f CommandFilter) storeFilter() store.CommandFilter {
	return store.CommandFilter{ClientID: f.Client, State: store.CommandState(f.State), Target: f.Target}
}

// AckMode says whether a client acknowledges the commands it receives.
type AckMode string

// The acknowledgement modes.
const (
	// AckAuto learns it: the client acknowledges once C2 heard an
	// acknowledgement or a sync request from it.
	AckAuto AckMode = AckMode(store.AckAuto)
	// AckYes declares a client that acknowledges.
	AckYes AckMode = AckMode(store.AckYes)
	// AckNo declares a client that never acknowledges (E4 v1 devices).
	AckNo AckMode = AckMode(store.AckNo)
)
