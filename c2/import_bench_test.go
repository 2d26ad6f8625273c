package c2

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

var benchClients = flag.Int("bench.import", 1_000_000, "clients imported by BenchmarkImportClients")

// csvOfClients streams a CSV of n named clients without keys (C2 generates
// them), as an operator's provisioning file would be.
func csvOfClients(n int) io.Reader {
	r, w := io.Pipe()
	go func() {
		fmt.Fprintln(w, "name")
		for i := range n {
			fmt.Fprintf(w, "sensor-%07d\n", i)
		}
		w.Close()
	}()
	return r
}

// BenchmarkImportClients imports a million clients (-bench.import) into
// SQLite through the service, with a progress line on stderr, then measures
// get, list and count at that size.
func BenchmarkImportClients(b *testing.B) {
	ctx := context.Background()
	n := *benchClients
	var env *testEnv
	for i := range b.N {
		b.StopTimer()
		if env != nil {
			env.stop()
		}
		env = newTestService(b, e4.SymKey, nil)
		b.StartTimer()
		start := time.Now()
		res, err := env.svc.ImportClients(ctx, csvOfClients(n), ImportCSV, func(done int) {
			if done%100_000 == 0 || done == n {
				fmt.Fprintf(os.Stderr, "\rimport %d: %7d / %d clients, %5.1f s", i+1, done, n, time.Since(start).Seconds())
			}
		})
		fmt.Fprintln(os.Stderr)
		if err != nil || res.Imported != n {
			b.Fatalf("imported %d: %v", res.Imported, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "clients/s")
	b.StopTimer()
	defer env.stop()
	if got, err := env.svc.CountClients(ctx); err != nil || got != int64(n) {
		b.Fatalf("count = %d, %v", got, err)
	}
	reportLatency(b, "get", func(i int) error {
		_, err := env.svc.GetClient(ctx, e4.IDFromName(fmt.Sprintf("sensor-%07d", i*7919%n)))
		return err
	})
	reportLatency(b, "list100", func(i int) error {
		after := e4.IDFromName(fmt.Sprintf("sensor-%07d", i*7919%n))
		page, err := env.svc.ListClients(ctx, after, 100)
		if err == nil && len(page) == 0 {
			err = fmt.Errorf("empty page")
		}
		return err
	})
	reportLatency(b, "count", func(int) error {
		_, err := env.svc.CountClients(ctx)
		return err
	})
}

// reportLatency runs op 2000 times and reports its mean latency.
func reportLatency(b *testing.B, name string, op func(i int) error) {
	const runs = 2000
	start := time.Now()
	for i := range runs {
		if err := op(i); err != nil {
			if name == "list100" && err.Error() == "empty page" {
				continue // the last ids of the keyspace have no page after them
			}
			b.Fatalf("%s: %v", name, err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/runs, name+"-µs")
}
