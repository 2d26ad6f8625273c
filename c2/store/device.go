package store

import (
	"context"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// CommandSuperseded is the state of an outbox entry that a newer command
// made pointless before it was sent (a newer key for the same item, the
// client removed); it is never sent.
const CommandSuperseded CommandState = "superseded"

// AckMode says whether C2 should expect a client's device to acknowledge
// commands.
type AckMode string

// The acknowledgement modes.
const (
	// AckAuto learns it: the device acknowledges once C2 heard an
	// acknowledgement or a sync request from it.
	AckAuto AckMode = "auto"
	// AckYes declares a device that acknowledges.
	AckYes AckMode = "yes"
	// AckNo declares a device that never acknowledges (E4 v1 devices).
	AckNo AckMode = "no"
)

// KeyState says which key a client's device holds during a client-key
// change (SK mode).
type KeyState string

// The key states of a client.
const (
	// KeySettled: no change pending; the device holds the client's key.
	KeySettled KeyState = ""
	// KeyChanging: a SetIDKey was sent and not confirmed; commands go out
	// under both the previous and the new key.
	KeyChanging KeyState = "changing"
	// KeyOld: the device proved it still holds the previous key (it
	// acknowledged or reported under it); commands go out under that key
	// and the SetIDKey is sent again.
	KeyOld KeyState = "old"
)

// DeviceState is what C2 knows of a client's device beyond its
// memberships. The zero value (with AckMode AckAuto) is the state of a
// device C2 never heard from.
type DeviceState struct {
	ClientID e4.ID
	AckMode  AckMode
	// AcksSeen is set once the device acknowledged a command or sent a
	// sync request.
	AcksSeen bool
	LastSeen time.Time // zero: never heard from
	LastSync time.Time // last sync request; zero: none
	// PrevSealedKey is the client key before a change not yet confirmed
	// (sealed like Client.SealedKey), nil when none is pending.
	PrevSealedKey []byte
	KeyChangedAt  time.Time
	KeyState      KeyState
	// StalledReason says why the client's queue stopped (a command that
	// failed for good); empty when it is not stalled.
	StalledReason string
	StalledAt     time.Time
	// C2KeyAcked is the C2 public key the device acknowledged holding (PK
	// mode), nil if none.
	C2KeyAcked []byte
}

// Acknowledges reports whether the device is expected to acknowledge.
func (s DeviceState) Acknowledges() bool {
	switch s.AckMode {
	case AckYes:
		return true
	case AckNo:
		return false
	}
	return s.AcksSeen
}

// MemberState is one topic of a client: the key version C2 wants it to
// hold and the version its device acknowledged (0: none).
type MemberState struct {
	Topic        string
	WantVersion  uint64
	AckedVersion uint64
	AckedAt      time.Time
}

// Behind reports whether the device has not acknowledged the current key.
func (m MemberState) Behind() bool { return m.AckedVersion < m.WantVersion }

// TopicCounts sums up the members of one topic against its current key
// version.
type TopicCounts struct {
	Version uint64
	Members int64
	// Current counts members whose device acknowledged Version.
	Current int64
	// BehindAcknowledging counts members behind whose devices
	// acknowledge: a repair will reach them. The other members behind
	// (Members - Current - BehindAcknowledging) are devices that never
	// acknowledge, whose state C2 cannot know.
	BehindAcknowledging int64
}

// BehindMember is a member of a topic that has not acknowledged its
// current key.
type BehindMember struct {
	ClientID     e4.ID
	AckedVersion uint64
	AckedAt      time.Time
	Acknowledges bool
	LastSeen     time.Time
}

// FleetCounts sums up every device.
type FleetCounts struct {
	Clients int64
	// Acknowledging, NotAcknowledging: devices known (or declared) to
	// acknowledge or not; the rest are unknown (auto, never heard from).
	Acknowledging, NotAcknowledging int64
	Stalled                         int64
	KeyChangesPending               int64
	// MembershipsBehind counts memberships whose device has not
	// acknowledged the topic's current key; ClientsBehind the clients with
	// at least one.
	MembershipsBehind, ClientsBehind int64
}

// RepairItem is a membership to send the current topic key again.
type RepairItem struct {
	ClientID e4.ID
	Topic    string
}

// RepairFilter selects memberships behind for a repair.
type RepairFilter struct {
	// Acknowledging selects devices that acknowledge (true) or those that
	// do not or are not known to (false).
	Acknowledging bool
	// SentBefore: only items whose last command was sent before this time
	// (and that have none pending).
	SentBefore time.Time
	// IdleBefore, if set: an item whose device was not heard from since
	// its last command was sent qualifies only if that command was sent
	// before this time (an offline device is not sent the same key over
	// and over).
	IdleBefore time.Time
	// After pages through the items by client then topic.
	After RepairItem
	Limit int
}

// DeviceTx is the part of Tx about the state of devices.
type DeviceTx interface {
	// GetDeviceState returns a client's device state; a client never heard
	// of has the zero state with AckMode AckAuto. ErrNotFound if the client
	// does not exist.
	GetDeviceState(client e4.ID) (DeviceState, error)
	// PutDeviceState writes a client's device state (not its command
	// timestamp, which only ReserveTimestamps moves).
	PutDeviceState(s DeviceState) error
	// SetTopicAcked records the version of topic's key the device of
	// client holds, as learned at at (0: not the current one).
	// ErrNotFound if the client is not a member.
	SetTopicAcked(client e4.ID, topic string, version uint64, at time.Time) error
	// MemberStates lists a client's topics after the given name.
	MemberStates(client e4.ID, after string, limit int) ([]MemberState, error)
	// CountMembersBehind counts a client's topics whose current key its
	// device has not acknowledged.
	CountMembersBehind(client e4.ID) (int64, error)
	// TopicCounts sums up a topic's members against its current version.
	TopicCounts(topic string) (TopicCounts, error)
	// TopicBehind lists the members of topic behind its current key by id.
	TopicBehind(topic string, after e4.ID, limit int) ([]BehindMember, error)
	// FleetCounts sums up every device.
	FleetCounts() (FleetCounts, error)
	// ItemsToRepair lists memberships behind matching f.
	ItemsToRepair(f RepairFilter) ([]RepairItem, error)
	// HasPendingCommand reports whether client has a pending command of
	// one of kinds (any kind when empty) about target.
	HasPendingCommand(client e4.ID, target string, kinds ...string) (bool, error)
	// SupersedeCommands marks the pending commands of client (every
	// client when nil) about target (every target when "") of one of kinds
	// (any when empty) superseded, unless a dispatcher holds them, and
	// returns how many. client and target cannot both be unset.
	SupersedeCommands(client *e4.ID, target string, now time.Time, kinds ...string) (int64, error)
	// ListKeyChanges lists the device states with a client-key change
	// pending (PrevSealedKey set), by client id after after.
	ListKeyChanges(after e4.ID, limit int) ([]DeviceState, error)
	// LinkSources lists the clients whose public keys target should hold
	// (the sources of links to it), by id after after.
	LinkSources(target, after e4.ID, limit int) ([]e4.ID, error)
	// SetLinkAcked records that target's device holds publicKey as the key
	// of source, learned at at. ErrNotFound if there is no such link.
	SetLinkAcked(source, target e4.ID, publicKey []byte, at time.Time) error
	// AcknowledgeCommand is Store.Acknowledge inside a transaction, so a
	// batch of acknowledgements and what they teach commit together.
	AcknowledgeCommand(id CommandID, at time.Time, refusal string) error
	// CountLinksBehind counts the links to target and those whose source's
	// current public key its device has not acknowledged.
	CountLinksBehind(target e4.ID) (links, behind int64, err error)
}

// DeviceStore is the part of Store about the state of devices, outside
// transactions, for the dispatcher.
type DeviceStore interface {
	// ReserveTimestamps gives each client in clients (at most once each)
	// the timestamp of its next command: max(now, last + 1) in Unix
	// seconds, recorded so that it grows across restarts and replicas. A
	// client whose next timestamp would be more than maxAhead after now
	// gets 0 and keeps its last timestamp. Unknown clients get now.
	ReserveTimestamps(ctx context.Context, clients []e4.ID, now time.Time, maxAhead time.Duration) ([]int64, error)
	// Postpone releases a command owner holds until next without counting
	// an attempt (a command held back, not a failure).
	Postpone(ctx context.Context, owner string, id CommandID, next time.Time) error
	// ClearStalled clears the stall of those of clients that are stalled
	// (a command to them went through).
	ClearStalled(ctx context.Context, clients []e4.ID) error
}
