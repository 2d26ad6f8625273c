package c2

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
)

// The scheduler at a million topics, each under its own weekly policy
// (1,000,000 exact-name policies), on SQLite:
//
//	go test -run '^$' -bench 'Scheduler1M' -benchtime 600x -timeout 60m ./c2/
//
// Setup (outside the timer) writes the topics, one member each, the
// policies and their schedule rows, then runs the scheduler's first pass,
// which computes every topic's due time from its key's age. Each timed
// operation is one tick, one simulated second after the last: ns/op is
// the CPU and wall time of a tick, B/op and allocs/op its garbage. The
// metrics say the heap in use after the run, the worst delay between a
// rotation's due time and its firing, and the most commands queued in any
// one-second window against the budget.
func BenchmarkScheduler1M(b *testing.B) {
	benchmarkScheduler(b, 1_000_000, true)
}

// BenchmarkScheduler10k is the baseline: ten thousand topics and
// policies, to compare the per-tick cost with.
func BenchmarkScheduler10k(b *testing.B) {
	benchmarkScheduler(b, 10_000, true)
}

// BenchmarkScheduler1MOnePolicy is the same million topics under one
// prefix policy.
func BenchmarkScheduler1MOnePolicy(b *testing.B) {
	benchmarkScheduler(b, 1_000_000, false)
}

const benchBudget = 5 // commands per second; a million weekly keys need 1.65

func benchmarkScheduler(b *testing.B, topics int, exact bool) {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "c2.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	master, _ := seal.GenerateKey()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	svc, err := New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: keys, Now: clock.Now,
		Automation: AutomationConfig{Disabled: true, Owner: "bench", Budget: benchBudget, Batch: 20000, Rescan: 365 * 24 * time.Hour}})
	if err != nil {
		b.Fatal(err)
	}
	added, err := svc.AddClient(ctx, NewClient{Name: "gateway"})
	if err != nil {
		b.Fatal(err)
	}
	member := added.ID
	setup := time.Now()
	fillTopics(b, st, topics, member, start, exact)
	if !exact {
		if _, err := svc.AddPolicy(ctx, Policy{Name: "weekly", Kind: TargetTopic, Selector: SelectPrefix, Pattern: "t/", Period: week, Jitter: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
	// The first pass: every row is due now for a check.
	firstPass := time.Now()
	passTicks := 0
	for {
		r := tickB(b, svc)
		passTicks++
		if r.Claimed == 0 {
			break
		}
		clock.Set(clock.Now().Add(time.Second))
	}
	b.Logf("setup %v; first pass over %d targets: %d ticks in %v", firstPass.Sub(setup).Round(time.Second), topics,
		passTicks, time.Since(firstPass).Round(time.Millisecond))
	var mem runtime.MemStats
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	began := clock.Now()
	cpuBefore := cpuTime()
	perSecond := map[int64]int64{}
	for i := 0; i < b.N; i++ {
		clock.Set(clock.Now().Add(time.Second))
		r := tickB(b, svc)
		perSecond[clock.Now().Unix()] += r.Commands
	}
	b.StopTimer()
	cpu := cpuTime() - cpuBefore
	runtime.GC()
	runtime.ReadMemStats(&mem)
	worst, fired := worstDelay(b, svc, began)
	var busiest int64
	for _, n := range perSecond {
		busiest = max(busiest, n)
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/tick")
	b.ReportMetric(float64(mem.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(worst.Seconds(), "worst-delay-s")
	b.ReportMetric(float64(busiest), "max-cmds/s")
	b.ReportMetric(float64(fired)/float64(b.N), "rotations/tick")
	if busiest > 2*benchBudget {
		b.Fatalf("%d commands in one second, budget %d/s (burst %d)", busiest, benchBudget, benchBudget)
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func tickB(b *testing.B, svc *Service) TickReport {
	r, err := svc.SchedulerTick(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// fillTopics writes topics named t/0000000 ... with one member and, when
// exact, a weekly policy each with its schedule row, in large
// transactions.
func fillTopics(b *testing.B, st store.Store, n int, member e4.ID, now time.Time, exact bool) {
	const chunk = 20000
	for first := 0; first < n; first += chunk {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			ptx := tx.(store.PolicyTx)
			for i := first; i < min(first+chunk, n); i++ {
				name := fmt.Sprintf("t/%07d", i)
				t := store.Topic{Name: name, Hash: e4.HashTopic(name), SealedKey: []byte("not opened by a rotation"),
					KeyVersion: 1, CreatedAt: now.Add(-365 * 24 * time.Hour), RotatedAt: now.Add(-365 * 24 * time.Hour)}
				if err := tx.InsertTopic(t); err != nil {
					return err
				}
				if err := tx.AddMember(member, name); err != nil {
					return err
				}
				if !exact {
					continue
				}
				p := store.Policy{Name: "weekly-" + name, Kind: store.TargetTopic, Selector: store.SelectExact, Pattern: name,
					Period: week, Jitter: time.Hour, CreatedAt: now, StartedAt: now}
				if err := ptx.PutPolicy(p); err != nil {
					return err
				}
				if err := ptx.PutDue(store.Due{Kind: store.TargetTopic, Target: name, DueAt: now}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// worstDelay returns the largest delay between due and fire time of the
// rotations fired since since, and how many there were.
func worstDelay(b *testing.B, svc *Service, since time.Time) (time.Duration, int) {
	var worst time.Duration
	var n int
	var after int64
	for {
		page, err := svc.ListRotations(context.Background(), RotationFilter{FiredSince: since}, after, MaxLimit)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range page {
			worst = max(worst, r.FiredAt.Sub(r.DueAt))
			n++
		}
		if len(page) < MaxLimit {
			return worst, n
		}
		after = page[len(page)-1].ID
	}
}
