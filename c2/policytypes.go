package c2

import "time"

// The types of the automation API: rotation policies and the record of
// rotations. They mirror the store's (policyconv.go converts), so that a
// caller of the service needs c2/store only to open a store.

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

// Policy is a rotation policy (see the README's "Automatic rotation"). A
// target is due when any of its policies says so: Period (a crypto
// period: one rotation per period, at a phase proper to the target),
// MaxAge (the key is older than that), MaxMessages (a message budget: the
// monitor counted that many messages under the topic's current key) or,
// for an event rule (OnEvent set), Threshold events within Window.
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
	// MaxMessages, when set, rotates a topic once the messages the
	// monitor counted under its current key reach it.
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
