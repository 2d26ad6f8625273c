// Package sqlstore implements store.Store over database/sql for both SQL
// backends (SQLite and PostgreSQL). The queries are plain SQL written for
// both: $n placeholders (SQLite binds $n to the n-th argument too), upserts
// with ON CONFLICT, RETURNING and materialized CTEs. What differs between the
// databases is described by a Dialect.
package sqlstore

import (
	"database/sql"
	"time"
)

// Dialect is what sqlstore needs to know about one database.
type Dialect struct {
	// Name names the database in error messages.
	Name string
	// EncodeTime turns a time into the value bound for a time column;
	// sqlstore hands it times already in UTC and truncated to
	// microseconds. Time columns may come back as int64 Unix microseconds
	// or as time.Time.
	EncodeTime func(t time.Time) any
	// ClaimLock ends the SELECT that picks commands to claim, such as
	// "FOR UPDATE SKIP LOCKED" where several processes share the database.
	ClaimLock string
	// UpdateOptions and ViewOptions start the transactions of Update and
	// View; DispatchOptions those of ClaimCommands, MarkSent, Retry and
	// Fail, which lock rows rather than rely on serializability.
	UpdateOptions, ViewOptions, DispatchOptions *sql.TxOptions
	// MigrationLock, when set, is run first in the migration transaction
	// so that processes opening the database at once migrate it in turn.
	MigrationLock string
	// Retryable reports a conflict with a concurrent transaction after
	// which the whole transaction may run again (serialization failure,
	// deadlock); nil when conflicts cannot happen.
	Retryable func(err error) bool
	// AnonymousPlaceholders writes the long parameter lists of
	// generated statements with ? rather than $n.
	AnonymousPlaceholders bool
	// InsertOrIgnore writes multi-row inserts as INSERT OR IGNORE (SQLite)
	// rather than with ON CONFLICT DO NOTHING.
	InsertOrIgnore bool
	// IntegrityCheck, when set, is a statement that reads the whole
	// database file and returns one row "ok" when it found no damage, or
	// rows describing the damage (SQLite's PRAGMA quick_check).
	IntegrityCheck string
	// CacheStatements prepares every fixed query once per connection.
	// Drivers that cache prepared statements themselves (pgx) leave it off.
	CacheStatements bool
}
