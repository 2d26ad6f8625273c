package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/c2/store/storetest"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// server is one PostgreSQL server for the whole test binary: each test
// gets its own database on it.
var server struct {
	once sync.Once
	pg   *testbroker.Postgres
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.pg != nil {
		server.pg.Stop()
	}
	os.Exit(code)
}

// startServer starts the shared server on first use; a missing binary
// fails the test with what to install.
func startServer(t testing.TB) *testbroker.Postgres {
	t.Helper()
	server.once.Do(func() {
		bin, err := testbroker.PostgresBinDir()
		if err != nil {
			server.err = err
			return
		}
		for attempt := 0; attempt < 3; attempt++ {
			server.pg, server.err = testbroker.NewPostgres(bin, testbroker.FreePort(t, "tcp"), nil)
			if server.err == nil {
				return
			}
		}
	})
	if server.err != nil {
		t.Fatal(server.err)
	}
	return server.pg
}

// openFresh opens a store on a new, empty database.
func openFresh(t testing.TB) (store.Store, string) {
	t.Helper()
	dsn := startServer(t).NewDatabase(t)
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return s, dsn
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openFresh(t)
		return s
	})
}

// TestReplicasClaimConcurrently: two stores with their own pools stand for
// two C2 replicas on one database; their dispatchers never claim a command
// twice, together claim them all, and keep each client's order.
func TestReplicasClaimConcurrently(t *testing.T) {
	first, dsn := openFresh(t)
	defer first.Close()
	second, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	cmds := storetest.ReplicaCommands(40, 6)
	if err := first.Update(t.Context(), func(tx store.Tx) error { return tx.EnqueueCommands(cmds) }); err != nil {
		t.Fatal(err)
	}
	claimed := storetest.ConcurrentDispatch(t, first, 6, len(cmds), 9, second)
	storetest.CheckDispatchOrder(t, cmds, claimed)
}

// TestReopenAndConcurrentMigration: replicas opening an empty database at
// once migrate it once; a reopen applies nothing again.
func TestReopenAndConcurrentMigration(t *testing.T) {
	dsn := startServer(t).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn)
			if err == nil {
				err = s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	s.Close()
	var versions int
	if err := rawDB(t, dsn).QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&versions); err != nil || versions != migrationCount(t) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", versions, err, migrationCount(t))
	}
}

// TestRefusesNewerSchema: a database migrated by a newer program is
// refused with ErrSchemaTooNew.
func TestRefusesNewerSchema(t *testing.T) {
	s, dsn := openFresh(t)
	s.Close()
	if _, err := rawDB(t, dsn).Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 'later')"); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.Open(t.Context(), dsn)
	if !errors.Is(err, postgres.ErrSchemaTooNew) {
		t.Fatalf("opening a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// TestOpenRefusesBadDSN: an unparsable DSN is an error that does not
// repeat the DSN (it may hold a password).
func TestOpenRefusesBadDSN(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://user:s3cret@[::1")
	if err == nil {
		t.Fatal("Open of a bad DSN succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// dropChecks drops every CHECK constraint of the schema, so that a test
// can store what the program never writes.
const dropChecks = `DO $$
DECLARE r record;
BEGIN
	FOR r IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
		WHERE contype = 'c' AND connamespace = 'public'::regnamespace
	LOOP
		EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
	END LOOP;
END $$`

// TestCorruption: damaged rows give errors. The raw connection drops the
// CHECK constraints and turns foreign-key triggers off for its session.
func TestCorruption(t *testing.T) {
	storetest.RunCorruption(t, func(t *testing.T) (store.Store, storetest.RawExec) {
		s, dsn := openFresh(t)
		conn, err := rawDB(t, dsn).Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		for _, q := range []string{dropChecks, "SET session_replication_role = replica"} {
			if _, err := conn.ExecContext(t.Context(), q); err != nil {
				t.Fatal(err)
			}
		}
		return s, func(query string, args ...any) error {
			_, err := conn.ExecContext(context.Background(), query, args...)
			return err
		}
	})
}

// rawDB connects directly, bypassing the store, to look at or damage
// what is stored.
func rawDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// migrationCount is the number of migration files, each recorded once.
func migrationCount(t *testing.T) int {
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migration files (%v)", err)
	}
	return len(files)
}
