package sqlite_test

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/c2/store/storetest"
)

// benchClients is how many clients the import and query benchmarks use.
var benchClients = flag.Int("bench.clients", 1_000_000, "clients imported by the SQLite benchmarks")

// importChunk is how many clients one Update of a batch import inserts.
const importChunk = 10_000

func openBench(b *testing.B) store.Store {
	b.Helper()
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkInsertClients imports -bench.clients clients in Updates of
// 10,000.
func BenchmarkInsertClients(b *testing.B) {
	storetest.BenchInsertClients(b, openBench, *benchClients, importChunk)
}

// BenchmarkClients measures reads at -bench.clients clients.
func BenchmarkClients(b *testing.B) {
	s := openBench(b)
	defer s.Close()
	ids := storetest.Populate(b, s, *benchClients, importChunk)
	b.Run("GetClient", func(b *testing.B) { storetest.BenchGetClient(b, s, ids) })
	b.Run("ListClients100", func(b *testing.B) { storetest.BenchListClients(b, s, ids, 100) })
	b.Run("CountClients", func(b *testing.B) { storetest.BenchCountClients(b, s, int64(len(ids))) })
	b.Run("C2KeyCounts", func(b *testing.B) { storetest.BenchC2KeyCounts(b, s, int64(len(ids))) })
	b.Run("IdleClients", func(b *testing.B) { storetest.BenchIdleClients(b, s, ids) })
}

// BenchmarkEnqueue appends commands 10,000 per Update.
func BenchmarkEnqueue(b *testing.B) {
	s := openBench(b)
	defer s.Close()
	storetest.BenchEnqueue(b, s, 10_000)
}

// BenchmarkDispatch claims commands 500 at a time and marks them sent.
func BenchmarkDispatch(b *testing.B) {
	for _, dispatchers := range []int{1, 4} {
		b.Run(map[int]string{1: "1dispatcher", 4: "4dispatchers"}[dispatchers], func(b *testing.B) {
			s := openBench(b)
			defer s.Close()
			storetest.BenchDispatch(b, []store.Store{s}, 10_000, 500, dispatchers)
		})
	}
}
