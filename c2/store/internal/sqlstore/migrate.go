package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// ErrSchemaTooNew reports a database migrated by a newer version of the
// program: this one does not know its tables and must not write to it.
var ErrSchemaTooNew = errors.New("store: the database schema is newer than this program")

// migration is one numbered .sql file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrationName is "0001_init.sql": a version, an underscore, a name.
var migrationName = regexp.MustCompile(`^([0-9]+)_[a-z0-9_]+\.sql$`)

// loadMigrations reads the .sql files of dir's root, which must be
// numbered 1, 2, 3, ... without gaps.
func loadMigrations(dir fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(dir, ".")
	if err != nil {
		return nil, fmt.Errorf("store: reading migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("store: migration file %q is not named like 0001_name.sql", e.Name())
		}
		version, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("store: migration file %q: %w", e.Name(), err)
		}
		body, err := fs.ReadFile(dir, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: reading migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: version, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migration %s: want version %d (no gaps, no repeats)", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate brings the schema of db up to the newest migration, applying
// the missing ones in order in one transaction, and refuses a database
// whose schema is newer than the migrations.
func migrate(ctx context.Context, db *sql.DB, d Dialect, dir fs.FS) error {
	ms, err := loadMigrations(dir)
	if err != nil {
		return err
	}
	t, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: starting the migration: %w", d.Name, err)
	}
	defer func() { _ = t.Rollback() }() // after Commit, a no-op
	if err := applyMigrations(ctx, t, d, ms); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("store: %s: committing the migration: %w", d.Name, err)
	}
	return nil
}

func applyMigrations(ctx context.Context, t *sql.Tx, d Dialect, ms []migration) error {
	current, err := schemaVersion(ctx, t, d)
	if err != nil {
		return err
	}
	if current > len(ms) {
		return fmt.Errorf("%w: %s database at schema version %d, this program knows up to %d; run a newer e4kit, or restore a backup made for this version",
			ErrSchemaTooNew, d.Name, current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := t.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("store: %s: migration %s: %w", d.Name, m.name, err)
		}
		_, err := t.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
			m.version, m.name, time.Now().UTC().Format(time.RFC3339))
		if err != nil {
			return fmt.Errorf("store: %s: recording migration %s: %w", d.Name, m.name, err)
		}
	}
	return nil
}

// schemaVersion takes the migration lock, creates schema_migrations if
// needed, and returns the newest version applied (0 for none).
func schemaVersion(ctx context.Context, t *sql.Tx, d Dialect) (int, error) {
	if d.MigrationLock != "" {
		if _, err := t.ExecContext(ctx, d.MigrationLock); err != nil {
			return 0, fmt.Errorf("store: %s: locking for the migration: %w", d.Name, err)
		}
	}
	_, err := t.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_migrations ("+
		"version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
	if err != nil {
		return 0, fmt.Errorf("store: %s: creating schema_migrations: %w", d.Name, err)
	}
	var version int64
	if err := t.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&version); err != nil {
		return 0, fmt.Errorf("store: %s: reading the schema version: %w", d.Name, err)
	}
	return int(version), nil
}
