package web

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

var benchHistory = flag.Int("bench.history", 300_000, "old rotations in the database of BenchmarkRotationHistory")

// BenchmarkRotationHistory renders the dashboard and the rotations page
// on a SQLite database holding -bench.history rotations fired a month
// ago and 50 in the last hour, against the same pages before the history
// was inserted (the baseline).
//
//	go test -run '^$' -bench BenchmarkRotationHistory -benchtime 50x ./c2/web/
func BenchmarkRotationHistory(b *testing.B) {
	h, sid, st := fleetHandlerStore(b, 0)
	pages := []struct{ name, path string }{
		{"dashboard", "/ui/"},
		{"rotations", "/ui/rotations"},
		{"rotations-stuck", "/ui/rotations?state=stuck"},
		{"rotations-policy", "/ui/rotations?policy=recent"},
	}
	run := func(phase string) {
		for _, p := range pages {
			b.Run(phase+"/"+p.name, func(b *testing.B) {
				for b.Loop() {
					render(b, h, sid, p.path)
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
			})
		}
	}
	run("empty")
	start := time.Now()
	if err := bulkRotations(context.Background(), st, *benchHistory, h.cfg.Service.Now()); err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted %d rotations in %v", *benchHistory+50, time.Since(start).Round(time.Millisecond))
	run("history")
}

// bulkRotations records n converged rotations a month before now, then 50
// in the last hour.
func bulkRotations(ctx context.Context, st store.Store, n int, now time.Time) error {
	insert := func(from, to int, policy string, at func(i int) time.Time) error {
		return st.Update(ctx, func(tx store.Tx) error {
			ptx := tx.(store.PolicyTx)
			for i := from; i < to; i++ {
				id, err := ptx.InsertRotation(store.Rotation{Kind: store.TargetTopic, Target: fmt.Sprintf("fleet/t%d", i%1000),
					Policy: policy, Reason: "period", DueAt: at(i), FiredAt: at(i), State: store.RotationStarted, Owner: "bench"})
				if err != nil {
					return err
				}
				if err := ptx.SettleRotation(id, store.RotationConverged, 0, "", at(i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	old := now.Add(-30 * 24 * time.Hour)
	for from := 0; from < n; from += 10_000 {
		if err := insert(from, min(n, from+10_000), "old", func(i int) time.Time { return old.Add(time.Duration(i) * time.Millisecond) }); err != nil {
			return err
		}
	}
	return insert(0, 50, "recent", func(i int) time.Time { return now.Add(-time.Hour + time.Duration(i)*time.Second) })
}
