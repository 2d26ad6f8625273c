package postgres_test

import (
	"context"
	"flag"
	"testing"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/c2/store/storetest"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// benchClients is how many clients the import and query benchmarks use.
var benchClients = flag.Int("bench.clients", 1_000_000, "clients imported by the PostgreSQL benchmarks")

// importChunk is how many clients one Update of a batch import inserts.
const importChunk = 10_000

// benchServer starts a server for one benchmark with fsync on, so that
// commits cost what they cost in production.
func benchServer(b *testing.B) *testbroker.Postgres {
	b.Helper()
	return testbroker.StartPostgres(b, &testbroker.PostgresOptions{Durable: true})
}

func openOn(b *testing.B, dsn string) store.Store {
	b.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkInsertClients imports -bench.clients clients in Updates of
// 10,000.
func BenchmarkInsertClients(b *testing.B) {
	pg := benchServer(b)
	storetest.BenchInsertClients(b, func(b *testing.B) store.Store { return openOn(b, pg.NewDatabase(b)) }, *benchClients, importChunk)
}

// BenchmarkClients measures reads at -bench.clients clients.
func BenchmarkClients(b *testing.B) {
	s := openOn(b, benchServer(b).NewDatabase(b))
	defer s.Close()
	ids := storetest.Populate(b, s, *benchClients, importChunk)
	b.Run("GetClient", func(b *testing.B) { storetest.BenchGetClient(b, s, ids) })
	b.Run("ListClients100", func(b *testing.B) { storetest.BenchListClients(b, s, ids, 100) })
	b.Run("CountClients", func(b *testing.B) { storetest.BenchCountClients(b, s, int64(len(ids))) })
}

// BenchmarkEnqueue appends commands 10,000 per Update.
func BenchmarkEnqueue(b *testing.B) {
	s := openOn(b, benchServer(b).NewDatabase(b))
	defer s.Close()
	storetest.BenchEnqueue(b, s, 10_000)
}

// BenchmarkDispatch claims commands 500 at a time and marks them sent: one
// dispatcher, four in one process, and two replicas (two pools) of two
// dispatchers each.
func BenchmarkDispatch(b *testing.B) {
	pg := benchServer(b)
	for _, bc := range []struct {
		name                  string
		replicas, dispatchers int
	}{{"1dispatcher", 1, 1}, {"4dispatchers", 1, 4}, {"2replicas", 2, 4}} {
		b.Run(bc.name, func(b *testing.B) {
			dsn := pg.NewDatabase(b)
			var stores []store.Store
			for range bc.replicas {
				s := openOn(b, dsn)
				defer s.Close()
				stores = append(stores, s)
			}
			storetest.BenchDispatch(b, stores, 10_000, 500, bc.dispatchers)
		})
	}
}
