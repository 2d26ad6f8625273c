// Package sqlite is the embedded C2 database: one SQLite file, with the
// pure-Go driver modernc.org/sqlite so that no C toolchain is needed.
//
// The file is in WAL mode: one connection writes (Update, ClaimCommands,
// MarkSent, Retry, Fail wait for it in turn instead of failing with
// SQLITE_BUSY) while a pool of read-only connections serves View. Only one
// process should write to a file at a time; a second one waits for the
// busy timeout.
//
// Because there is one write connection, a function passed to Update must
// not call Update, ClaimCommands, MarkSent, Retry or Fail itself: that call
// would wait for the connection its caller holds until its context ends.
// View may be called from inside Update (it sees the last commit, not the
// Update's own writes).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaTooNew reports a file migrated by a newer version of e4kit.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// busyTimeout is how long a statement waits for a lock another process
// holds before it fails.
const busyTimeout = 10 * time.Second

// dialect describes SQLite to the shared SQL code.
var dialect = sqlstore.Dialect{
	Name:                  "sqlite",
	EncodeTime:            func(t time.Time) any { return t.UnixMicro() },
	ViewOptions:           &sql.TxOptions{ReadOnly: true},
	AnonymousPlaceholders: true,
	InsertOrIgnore:        true,
	CacheStatements:       true,
	// quick_check reads every page (O(N), without matching indexes to
	// their tables): what a damaged file needs to be seen by Health.
	IntegrityCheck: "PRAGMA quick_check",
}

// Open opens the database file at path, creating it with mode 0600 if it
// does not exist, and migrates it to the current schema.
func Open(ctx context.Context, path string) (store.Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	if err := createPrivate(abs); err != nil {
		return nil, err
	}
	writer, err := sql.Open("sqlite", dsn(abs, writerPragmas))
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	// One connection writes: callers queue for it in database/sql.
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	readers := max(4, runtime.GOMAXPROCS(0))
	reader, err := sql.Open("sqlite", dsn(abs, readerPragmas))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, errors.Join(err, writer.Close(), reader.Close())
	}
	return sqlstore.Open(ctx, dialect, writer, reader, migrations)
}

// createPrivate creates the database file with mode 0600 unless it exists,
// so that SQLite (which gives its -wal and -shm files the database's mode)
// never makes it readable by others.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: sqlite: %w", err)
	}
	return f.Close()
}

// Pragmas of every connection. synchronous=FULL makes each commit durable
// across a power loss: an outbox entry or a rotated key must not vanish
// after a device got it.
var (
	commonPragmas = []string{
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"foreign_keys(1)",
		"temp_store(memory)",
	}
	writerPragmas = append([]string{"journal_mode(wal)", "synchronous(full)", "cache_size(-65536)"}, commonPragmas...)
	readerPragmas = append([]string{"query_only(1)", "cache_size(-16384)"}, commonPragmas...)
)

// dsn is a file: URI for path with the driver's parameters: the pragmas,
// and BEGIN IMMEDIATE so that a write transaction takes the write lock
// when it starts rather than failing to upgrade a read lock later.
func dsn(path string, pragmas []string) string {
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}
