package store

import "time"

// This file is the part of the store that the C2 API layer uses for its
// own bookkeeping: API tokens and the audit log. The service layer never
// calls it.

// Token is an API token. The store never sees the token itself, only a
// hash of it, so a copy of the database lets nobody call the API.
type Token struct {
	// Name identifies the token for people (and in the audit log); it is
	// unique, also among revoked tokens.
	Name string
	// Hash is the SHA-256 of the token (32 bytes), the lookup key.
	Hash []byte
	// Scope is what the token may do ("read", "operate", "admin"); the
	// store keeps it as given.
	Scope     string
	CreatedBy string
	CreatedAt time.Time
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time
	// RevokedAt is zero for a token that was not revoked.
	RevokedAt time.Time
}

// AuditRecord is one entry of the audit log: who did what to what, when,
// and how it ended. It never holds key material.
type AuditRecord struct {
	// ID is assigned by the store on insert; it grows with every record.
	ID      int64
	Time    time.Time
	Actor   string // "token:NAME" or "cert:SUBJECT"
	Action  string // the API call, such as "AddClient"
	Target  string // the client, topic or token concerned, if any
	Outcome string // "ok" or the failure's status code
	Detail  string // the failure message, if any
	Remote  string // the caller's address
}

// AuditFilter selects audit records; zero fields match everything.
type AuditFilter struct {
	Actor, Action, Target, Outcome string
	// Since and Until bound Time (inclusive, exclusive) when not zero.
	Since, Until time.Time
}

// AccessTx is the part of a transaction that keeps API tokens and the
// audit log. Every Tx of the SQL backends implements it; the API layer
// asserts it on the Tx it gets.
type AccessTx interface {
	// InsertToken adds a token, or fails with ErrExists when its name or
	// its hash is taken.
	InsertToken(t Token) error
	// TokenByHash returns the token with that hash, revoked or not, or
	// ErrNotFound.
	TokenByHash(hash []byte) (Token, error)
	// ListTokens lists tokens by name after the given name.
	ListTokens(after string, limit int) ([]Token, error)
	// CountTokens counts tokens, revoked ones included.
	CountTokens() (int64, error)
	// RevokeToken marks a token revoked at at, or fails with ErrNotFound.
	// Revoking a revoked token keeps its first revocation time.
	RevokeToken(name string, at time.Time) error

	// InsertAudit appends a record and returns its id.
	InsertAudit(r AuditRecord) (int64, error)
	// ListAudit lists matching records by id after afterID.
	ListAudit(f AuditFilter, afterID int64, limit int) ([]AuditRecord, error)
}
