// Package store defines what the C2 server keeps in its database and the
// interface every database backend implements.
//
// The store never sees a key in clear: client keys, topic keys, the C2 private
// key and the plain commands waiting in the outbox arrive already sealed by
// package c2/seal, and come back the same way. Backends (sqlite, postgres) run
// the conformance suite in package storetest.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// Errors every backend returns, possibly wrapped with detail.
var (
	// ErrNotFound reports that the client, topic, setting or command asked
	// for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists reports an insert of a client, topic, membership or link
	// that is already there.
	ErrExists = errors.New("store: already exists")
	// ErrLeaseLost reports that a dispatcher tried to settle a command it
	// no longer holds (its lease expired and another dispatcher took it).
	ErrLeaseLost = errors.New("store: command lease lost")
)

// Client is a device known to C2. Which key fields are set depends on the
// deployment's mode: SealedKey in symmetric-key mode, PublicKey in
// public-key mode (C2 never holds a device's private key).
type Client struct {
	ID   e4.ID
	Name string // empty when the client was added by id only
	// SealedKey is the client's symmetric key sealed by c2/seal (SK mode).
	SealedKey []byte
	// PublicKey is the client's Ed25519 public key (PK mode), not secret.
	PublicKey []byte
	CreatedAt time.Time
}

// Topic is a topic C2 manages a key for.
type Topic struct {
	Name      string
	Hash      e4.TopicHash
	SealedKey []byte
	// KeyVersion starts at 1 and grows by one at every rotation.
	KeyVersion uint64
	CreatedAt  time.Time
	RotatedAt  time.Time
	// PrevSealedKey is the key RotatedAt replaced (version KeyVersion-1),
	// sealed like SealedKey, kept while devices may still use it after
	// the rotation (their key-transition window) so that the monitor can
	// tell a lagging device from a forgery. Nil when there is none: no
	// rotation yet, a rotation that revoked the old key (after a member
	// removal), or a window that is over (ForgetPreviousTopicKeys).
	PrevSealedKey []byte
}

// CommandState is where an outbox entry is in its life.
type CommandState string

// The states of an outbox entry. Pending covers both "waiting" and "being
// sent under a dispatcher's lease".
const (
	CommandPending CommandState = "pending"
	CommandSent    CommandState = "sent"
	CommandFailed  CommandState = "failed"
)

// CommandID identifies an outbox entry. It is random, assigned by C2 before
// the insert, so the sealed payload can be bound to it.
type CommandID [16]byte

// Command is one outbox entry: an E4 command for one client, stored sealed
// and in clear-text form only in memory. It is protected (timestamped and
// encrypted for the client) at dispatch time, not at enqueue time, so a
// command that waited out a broker outage is not too old when it arrives.
type Command struct {
	ID       CommandID
	Seq      int64 // assigned by the store on insert; orders commands
	ClientID e4.ID
	// Kind is the E4 command name, e.g. "SetTopicKey"; for display and
	// filtering only, the sealed payload is authoritative.
	Kind string
	// Target names what the command is about (a topic name, a client id),
	// for display and filtering. Never key material.
	Target        string
	SealedPayload []byte
	State         CommandState
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	SentAt        time.Time // zero unless State is CommandSent
	// AckedAt is when the device acknowledged the command; zero if it
	// did not (or never does).
	AckedAt time.Time
}

// CommandFilter selects outbox entries; zero fields match everything.
type CommandFilter struct {
	ClientID *e4.ID
	State    CommandState
	Target   string
}

// Store is a C2 database. All methods are safe for concurrent use.
type Store interface {
	// Update runs fn in a read-write transaction and commits it when fn
	// returns nil; any error rolls everything back. A state change and the
	// outbox entries it causes are written in one Update, so either both
	// happen or neither does. fn may be retried by the backend on
	// serialization conflicts, so it must have no side effects outside tx.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(tx Tx) error) error

	// ClaimCommands leases up to limit pending commands whose NextAttemptAt
	// is not after now and whose lease is free or expired, for owner until
	// now+lease. Only the oldest pending command of each client is ever
	// claimable, so commands for one client go out in Seq order even with
	// several dispatchers (or C2 replicas) on one database; two callers never
	// hold the same command at once. Returned in Seq order.
	ClaimCommands(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Command, error)
	// MarkSent settles commands owner holds as sent at sentAt. Commands
	// whose lease owner has changed are skipped and reported with
	// ErrLeaseLost (after the others were settled).
	MarkSent(ctx context.Context, owner string, ids []CommandID, sentAt time.Time) error
	// Retry releases a command owner holds, recording the error, counting
	// the attempt and making it claimable again at next.
	Retry(ctx context.Context, owner string, id CommandID, next time.Time, reason string) error
	// Fail settles a command owner holds as failed for good with reason.
	Fail(ctx context.Context, owner string, id CommandID, reason string) error
	// Acknowledge records its device's answer to a pending or sent
	// command, whoever holds its lease (a resend may be out when the
	// answer comes): when refusal is empty it is acknowledged at at (and
	// sent, if it was pending), else failed with refusal. An unknown id
	// gives ErrNotFound, a command failed, superseded or already
	// acknowledged ErrLeaseLost.
	Acknowledge(ctx context.Context, id CommandID, at time.Time, refusal string) error

	DeviceStore

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Tx is one transaction. Lists use keyset pagination: pass the last key of
// the previous page (zero value for the first page); a page shorter than
// limit is the last one. It must not be used after its Update/View returns.
type Tx interface {
	DeviceTx

	InsertClient(c Client) error
	// InsertClients inserts many clients at once (batch import); it fails
	// with ErrExists and inserts none if any id is already there.
	InsertClients(cs []Client) error
	GetClient(id e4.ID) (Client, error)
	// UpdateClientKey replaces the sealed key and the public key of a client.
	UpdateClientKey(id e4.ID, sealedKey, publicKey []byte) error
	// DeleteClient removes a client with its memberships and links, but
	// not its outbox entries (they stay queryable).
	DeleteClient(id e4.ID) error
	ListClients(after e4.ID, limit int) ([]Client, error)
	CountClients() (int64, error)

	InsertTopic(t Topic) error
	GetTopic(name string) (Topic, error)
	// UpdateTopicKey stores a topic's key, its version, the previous key
	// to keep (nil for none) and when the key was rotated: a rotation
	// passes the replaced key as prevSealedKey, a re-sealing both keys
	// re-sealed with the version and time unchanged.
	UpdateTopicKey(name string, sealedKey, prevSealedKey []byte, version uint64, rotatedAt time.Time) error
	// HasPreviousTopicKeys reports whether a topic rotated before
	// rotatedBefore still keeps its previous key (a read, so that an idle
	// C2 checks without taking a write lock).
	HasPreviousTopicKeys(rotatedBefore time.Time) (bool, error)
	// ForgetPreviousTopicKeys clears the previous key of the topics
	// rotated before rotatedBefore, whose transition window is over, and
	// returns how many it cleared.
	ForgetPreviousTopicKeys(rotatedBefore time.Time) (int64, error)
	// DeleteTopic removes a topic with its memberships.
	DeleteTopic(name string) error
	ListTopics(after string, limit int) ([]Topic, error)
	CountTopics() (int64, error)

	AddMember(client e4.ID, topic string) error
	RemoveMember(client e4.ID, topic string) error
	IsMember(client e4.ID, topic string) (bool, error)
	// RemoveAllMemberships removes every membership of a client and
	// returns the topics it was in.
	RemoveAllMemberships(client e4.ID) ([]string, error)
	TopicsOfClient(client e4.ID, after string, limit int) ([]string, error)
	CountTopicsOfClient(client e4.ID) (int64, error)
	ClientsOfTopic(topic string, after e4.ID, limit int) ([]e4.ID, error)
	CountClientsOfTopic(topic string) (int64, error)

	// AddLink records that target should receive source's public key and
	// its changes (PK mode).
	AddLink(source, target e4.ID) error
	RemoveLink(source, target e4.ID) error
	// LinkTargets lists the clients linked from source.
	LinkTargets(source e4.ID, after e4.ID, limit int) ([]e4.ID, error)

	// GetSetting returns a named value (such as the sealed C2 key pair).
	GetSetting(name string) ([]byte, error)
	PutSetting(name string, value []byte) error

	// EnqueueCommands appends commands to the outbox in slice order; the
	// store assigns Seq, State=pending, Attempts=0.
	EnqueueCommands(cmds []Command) error
	GetCommand(id CommandID) (Command, error)
	// ListCommands lists matching commands by Seq after afterSeq.
	ListCommands(f CommandFilter, afterSeq int64, limit int) ([]Command, error)
	CountCommands(f CommandFilter) (int64, error)
	// UpdateCommandPayload replaces the sealed payload of a command, in any
	// state (a master-key rekey re-seals every value).
	UpdateCommandPayload(id CommandID, sealedPayload []byte) error
}
