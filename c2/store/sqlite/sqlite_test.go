package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/c2/store/storetest"
	"github.com/e4-iot/e4kit/e4"
)

func openTemp(t testing.TB) (store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c2.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		return s
	})
}

// TestFileModeAndReopen: the file is created private, in WAL mode, and a
// reopen keeps the data and applies no migration twice.
func TestFileModeAndReopen(t *testing.T) {
	s, path := openTemp(t)
	c := store.Client{ID: e4.IDFromName("kept"), Name: "kept"}
	if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.InsertClient(c) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("database file mode %o, want 600", mode)
	}
	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	if err := s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.GetClient(c.ID)
		return err
	}); err != nil {
		t.Fatalf("after the reopen: %v", err)
	}
	raw := rawDB(t, path)
	var versions int
	var journal string
	if err := raw.QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow("PRAGMA journal_mode").Scan(&journal); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(t); versions != want || journal != "wal" {
		t.Errorf("%d migrations recorded, journal mode %q; want %d and wal", versions, journal, want)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if info, err := os.Stat(path + suffix); err == nil && info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", suffix, info.Mode().Perm())
		}
	}
}

// TestRefusesNewerSchema: a file migrated by a newer program is refused
// with ErrSchemaTooNew, and left as it is.
func TestRefusesNewerSchema(t *testing.T) {
	s, path := openTemp(t)
	s.Close()
	raw := rawDB(t, path)
	if _, err := raw.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 'later')"); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(t.Context(), path)
	if !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("opening a newer schema: %v, want ErrSchemaTooNew", err)
	}
	var n int
	if err := raw.QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != migrationCount(t)+1 {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, migrationCount(t)+1)
	}
}

// migrationCount is the number of migration files, each recorded once.
func migrationCount(t *testing.T) int {
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migration files (%v)", err)
	}
	return len(files)
}

// TestOpenFailsClearly: a path in a missing directory is an error.
func TestOpenFailsClearly(t *testing.T) {
	_, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "c2.db"))
	if err == nil {
		t.Fatal("opening a file in a missing directory succeeded")
	}
}

// rawDB opens the file directly, bypassing the checks of the store, to
// look at or damage what is stored.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestCorruption: damaged rows give errors, through a raw connection that
// ignores the CHECK constraints (foreign keys are off by default there).
func TestCorruption(t *testing.T) {
	storetest.RunCorruption(t, func(t *testing.T) (store.Store, storetest.RawExec) {
		s, path := openTemp(t)
		raw := rawDB(t, path)
		raw.SetMaxOpenConns(1)
		if _, err := raw.Exec("PRAGMA ignore_check_constraints = ON"); err != nil {
			t.Fatal(err)
		}
		return s, func(query string, args ...any) error {
			_, err := raw.Exec(query, args...)
			return err
		}
	})
}
