package store

import (
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// This file is the part of the store that keeps the automatic rotation of
// package c2: the policies, the schedule of the keys they cover and the
// outcome of every rotation.

// TargetKind says which kind of key a policy rotates.
type TargetKind string

// The kinds of keys a policy rotates.
const (
	TargetTopic  TargetKind = "topic"  // topic keys (SetTopicKey)
	TargetClient TargetKind = "client" // client keys (SetIDKey, SK mode)
	TargetC2     TargetKind = "c2"     // C2's key pair (SetC2Key, PK mode)
)

// Selector says how a policy's Pattern selects its targets.
type Selector string

// The selectors.
const (
	SelectAll    Selector = "all"    // every target of the kind
	SelectExact  Selector = "exact"  // the target named Pattern
	SelectPrefix Selector = "prefix" // names starting with Pattern
	SelectFilter Selector = "filter" // topics matching an MQTT filter (+, #)
)

// Policy is a rotation policy. A target is due when any of its policies
// says so: Period (a crypto period: one rotation per period, at a phase
// proper to the target), MaxAge (the key is older than that), MaxMessages
// (a message budget: the monitor counted that many messages under the
// topic's current key) or, for an event rule (OnEvent set), Threshold
// events within Window.
type Policy struct {
	Name     string
	Kind     TargetKind
	Selector Selector
	Pattern  string
	Period   time.Duration
	MaxAge   time.Duration
	// Jitter bounds the random-looking (but deterministic) delay added to
	// each due time, below Period/2.
	Jitter    time.Duration
	OnEvent   string
	Threshold int64
	Window    time.Duration
	// MaxMessages, when set, rotates a topic once the messages counted
	// under its current key reach it (see PolicyTx.AddTopicMessages).
	MaxMessages int64
	// Ramp, when set, is how many rotations the policy may fire in the
	// first minute after StartedAt; the allowance doubles every minute.
	Ramp int64
	// PauseBehind, when set, pauses the policy when the devices behind
	// its stuck rotations since StartedAt reach this many.
	PauseBehind  int64
	PausedReason string // empty while the policy runs
	CreatedBy    string
	CreatedAt    time.Time
	// StartedAt is when the policy was created or last resumed.
	StartedAt time.Time
}

// Due is a target's row in the schedule: when the scheduler should look
// at it again. DueAt is a lower bound, the key's age decides.
type Due struct {
	Kind   TargetKind
	Target string
	DueAt  time.Time
	// Event, when set, forces a rotation at DueAt (such as
	// "member_removed", which also makes the members drop the old key).
	Event      string
	Attempts   int64
	LastError  string
	LeaseOwner string
	LeaseUntil time.Time
}

// RotationState is where a rotation is.
type RotationState string

// The states of a rotation.
const (
	RotationStarted    RotationState = "started"
	RotationConverged  RotationState = "converged"
	RotationStuck      RotationState = "stuck"
	RotationSuperseded RotationState = "superseded"
	RotationFailed     RotationState = "failed"
)

// Rotation records one rotation (fired by the scheduler or not: Policy
// empty, Reason "manual" or the event) and its outcome.
type Rotation struct {
	ID       int64 // assigned by the store
	Kind     TargetKind
	Target   string
	Policy   string
	Reason   string // "period", "age", "messages", or the event
	DueAt    time.Time
	FiredAt  time.Time
	Version  uint64 // the key version it made (topics)
	Commands int64
	State    RotationState
	// Behind counts the members that had not acknowledged when it was
	// settled.
	Behind    int64
	Detail    string
	SettledAt time.Time
	Owner     string // the replica that fired it
}

// RotationFilter selects rotations; zero fields match everything.
type RotationFilter struct {
	Kind        TargetKind
	Target      string
	Policy      string
	State       RotationState
	FiredBefore time.Time
	FiredSince  time.Time
}

// PolicyTx is the part of a transaction about automatic rotation. Every
// Tx of the SQL backends implements it; package c2 asserts it.
type PolicyTx interface {
	// PutPolicy inserts a policy or replaces the one of that name.
	PutPolicy(p Policy) error
	GetPolicy(name string) (Policy, error)
	DeletePolicy(name string) error
	ListPolicies(after string, limit int) ([]Policy, error)
	// PoliciesFor returns the policies of kind that may select target:
	// the exact ones naming it and every non-exact one.
	PoliciesFor(kind TargetKind, target string) ([]Policy, error)
	// EventPolicies lists the policies with OnEvent set by name after
	// after.
	EventPolicies(after string, limit int) ([]Policy, error)
	// HasPolicies reports whether any policy of kind exists.
	HasPolicies(kind TargetKind) (bool, error)
	// HasBudgetPolicies reports whether any policy has MaxMessages set.
	HasBudgetPolicies() (bool, error)

	// AddTopicMessages adds n (at least 0) to the messages counted under
	// a topic's key version, atomically (several replicas add to it), and
	// returns the new count; counted is false, and nothing changes, when
	// the topic is gone or its key is no longer of that version. A new key
	// version starts at 0 (UpdateTopicKey).
	AddTopicMessages(topic string, version uint64, n int64) (count int64, counted bool, err error)
	// TopicMessages returns a topic's key version and the messages counted
	// under it; ErrNotFound for an unknown topic.
	TopicMessages(topic string) (version uint64, count int64, err error)

	// ScheduleTopics gives every topic whose name starts with prefix a
	// schedule row due at at, or moves an existing row's due time back to
	// at (onlyMissing: leaves existing rows alone); it returns how many
	// rows it wrote.
	ScheduleTopics(prefix string, at time.Time, onlyMissing bool) (int64, error)
	// ScheduleClients does the same for every client; targets are the
	// clients' ids in lower-case hex.
	ScheduleClients(at time.Time, onlyMissing bool) (int64, error)
	// PutDue writes a schedule row (lease included).
	PutDue(d Due) error
	// MergeEvent records a forced rotation: a new row due at at, or the
	// existing row due at the earlier of its time and at, with event set
	// (a pending event keeps its own).
	MergeEvent(kind TargetKind, target, event string, at time.Time) error
	GetDue(kind TargetKind, target string) (Due, error)
	DeleteDue(kind TargetKind, target string) error
	// ClaimDue leases to owner until now+lease up to limit rows due at
	// now whose lease is free or expired, earliest first.
	ClaimDue(owner string, now time.Time, lease time.Duration, limit int) ([]Due, error)
	// ListDue lists rows due before until by due time, after the given
	// row (zero for the first page).
	ListDue(until time.Time, after Due, limit int) ([]Due, error)
	// CountDue counts rows due before until.
	CountDue(until time.Time) (int64, error)

	// InsertRotation records a rotation and returns its id.
	InsertRotation(r Rotation) (int64, error)
	// SettleRotation sets a started rotation's state, behind count and
	// detail; ErrNotFound when no started rotation has that id (another
	// replica settled it first).
	SettleRotation(id int64, state RotationState, behind int64, detail string, at time.Time) error
	// ListRotations lists matching rotations by id after afterID.
	ListRotations(f RotationFilter, afterID int64, limit int) ([]Rotation, error)
	// CountRotations counts matching rotations.
	CountRotations(f RotationFilter) (int64, error)
	// SumBehind sums Behind over matching rotations.
	SumBehind(f RotationFilter) (int64, error)

	// ClientKeyCreatedAt returns when a client's key was made (its
	// creation when it never changed).
	ClientKeyCreatedAt(id e4.ID) (time.Time, error)
	// SetClientKeyCreatedAt records when a client's key was made.
	SetClientKeyCreatedAt(id e4.ID, at time.Time) error

	// C2KeyCounts sums up the clients created at or before since against
	// the C2 public key publicKey (PK mode): how many acknowledged holding
	// it, and how many of the others acknowledge commands.
	C2KeyCounts(publicKey []byte, since time.Time) (C2KeyCounts, error)

	// IdleClients lists the clients whose device was last heard from
	// before before, after the given one in the order of their last
	// contact then id (a zero SeenClient for the first page). Devices never
	// heard from are not listed.
	IdleClients(after SeenClient, before time.Time, limit int) ([]SeenClient, error)
}

// SeenClient is a client and when C2 last heard from its device.
type SeenClient struct {
	ID       e4.ID
	LastSeen time.Time
}

// C2KeyCounts sums up the devices against a C2 public key, like
// TopicCounts for a topic key.
type C2KeyCounts struct {
	// Clients counts the clients that existed when the key was made.
	Clients int64
	// Current counts those whose device acknowledged holding the key.
	Current int64
	// BehindAcknowledging counts those behind whose devices acknowledge:
	// a repair will reach them. The others behind (Clients - Current -
	// BehindAcknowledging) never acknowledge; C2 cannot know their state.
	BehindAcknowledging int64
}
