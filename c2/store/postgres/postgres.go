// Package postgres is the C2 database on PostgreSQL, for scale and for
// several C2 replicas sharing one database. It uses pgx through
// database/sql.
//
// Update runs SERIALIZABLE transactions and runs them again when the
// server reports a serialization failure or a deadlock, so state changes of
// replicas never interleave; View runs REPEATABLE READ READ ONLY (one
// snapshot, never a conflict). The outbox methods lock rows instead:
// ClaimCommands picks with FOR UPDATE SKIP LOCKED under READ COMMITTED, so
// two dispatchers never wait for each other nor take the same command.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaTooNew reports a database migrated by a newer version of e4kit.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// Pool sizes. A C2 process runs its API handlers and a few dispatchers;
// the server's max_connections is shared by every replica.
const (
	maxConns        = 16
	connMaxIdleTime = 5 * time.Minute
)

// migrationLockKey is the advisory lock that makes replicas starting at
// once apply the migrations one after the other ("e4c2" in ASCII).
const migrationLockKey = 0x65346332

// dialect describes PostgreSQL to the shared SQL code.
var dialect = sqlstore.Dialect{
	Name:            "postgres",
	EncodeTime:      func(t time.Time) any { return t },
	ClaimLock:       "FOR UPDATE SKIP LOCKED",
	UpdateOptions:   &sql.TxOptions{Isolation: sql.LevelSerializable},
	ViewOptions:     &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	DispatchOptions: &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	MigrationLock:   fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockKey),
	Retryable:       retryable,
}

// retryable reports the errors after which a transaction may simply run
// again: serialization failure and deadlock.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "40001" || pgErr.Code == "40P01"
}

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string as libpq takes) and migrates it to the current schema.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("store: postgres: the connection string cannot be parsed")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return sqlstore.Open(ctx, dialect, db, db, migrations)
}
