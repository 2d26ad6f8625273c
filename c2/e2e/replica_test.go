package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// Environment of the scheduler replicas of TestSchedulerReplicas.
const (
	envReplica      = "E4KIT_E2E_REPLICA"       // the replica's name
	envReplicaDSN   = "E4KIT_E2E_REPLICA_DSN"   // the PostgreSQL database
	envReplicaClock = "E4KIT_E2E_REPLICA_CLOCK" // the file of the simulated time
)

var simStart = time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)

// fileClock is the simulated clock the replicas share: the test writes the
// time (Unix ns) to a file, the replicas read it at every call.
type fileClock struct {
	path string
	mu   sync.Mutex
	last time.Time
}

func (c *fileClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, err := os.ReadFile(c.path); err == nil {
		if ns, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			c.last = time.Unix(0, ns).UTC()
		}
	}
	return c.last
}

// Set writes the time atomically (a rename), so a reader never sees half.
func (c *fileClock) Set(t time.Time) error {
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(t.UnixNano(), 10)), 0o600); err != nil {
		return err
	}
	c.mu.Lock()
	c.last = t
	c.mu.Unlock()
	return os.Rename(tmp, c.path)
}

// TestSchedulerReplicaChild is one replica of TestSchedulerReplicas, run in
// a child process (it does nothing when run by go test itself).
func TestSchedulerReplicaChild(t *testing.T) {
	name := os.Getenv(envReplica)
	if name == "" {
		return
	}
	if err := runReplica(name); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runReplica(name string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	clock := &fileClock{path: os.Getenv(envReplicaClock)}
	master, err := hex.DecodeString(os.Getenv(envMaster))
	if err != nil {
		return err
	}
	st, err := postgres.Open(ctx, os.Getenv(envReplicaDSN))
	if err != nil {
		return err
	}
	defer st.Close()
	svc, err := replicaService(ctx, st, master, clock.Now, name)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// replicaService is a C2 without transport whose scheduler ticks every
// 10 ms of real time and holds the rows it claims for 30 simulated
// minutes.
func replicaService(ctx context.Context, st store.Store, master []byte, now func() time.Time, owner string) (*c2.Service, error) {
	keys, err := seal.NewKeyring(master)
	if err != nil {
		return nil, err
	}
	return c2.New(ctx, c2.Config{
		Mode: e4.SymKey, Store: st, Keyring: keys, Now: now,
		Automation: c2.AutomationConfig{Owner: owner, Tick: 10 * time.Millisecond, Lease: 30 * time.Minute, Budget: 1e6, Batch: 50},
	})
}

// TestSchedulerReplicas runs three scheduler replicas on one PostgreSQL
// database over four simulated days of 6-hourly rotations of 30 topics,
// killing one replica with SIGKILL at random moments and starting it again:
// every period boundary of every topic is rotated exactly once (0
// duplicates, 0 missed), and every key version has its record. The test
// moves the shared clock 10 simulated minutes at a time, and only once no
// schedule row is overdue by 10 minutes (see waitNotOverdue): a loaded
// machine slows the simulation down instead of making the replicas look
// late.
func TestSchedulerReplicas(t *testing.T) {
	const (
		topics   = 30
		period   = 6 * time.Hour
		jitter   = 30 * time.Minute
		simulate = 4 * 24 * time.Hour
	)
	dsn := testbroker.StartPostgres(t, nil).NewDatabase(t)
	master := newMaster(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := &fileClock{path: filepath.Join(t.TempDir(), "clock")}
	mustDo(t, clock.Set(simStart))
	now := clock.Now
	admin, err := replicaService(ctx, st, master, now, "setup")
	if err != nil {
		t.Fatal(err)
	}
	for i := range topics {
		name := fmt.Sprintf("site/%02d/data", i)
		if _, err := admin.AddTopic(ctx, name); err != nil {
			t.Fatal(err)
		}
		added, err := admin.AddClient(ctx, c2.NewClient{Name: fmt.Sprintf("dev-%02d", i)})
		if err != nil {
			t.Fatal(err)
		}
		mustDo(t, admin.AddMember(ctx, name, added.ID))
	}
	policy, err := admin.AddPolicy(ctx, c2.Policy{Name: "six-hourly", Kind: c2.TargetTopic, Selector: c2.SelectPrefix,
		Pattern: "site/", Period: period, Jitter: jitter})
	if err != nil {
		t.Fatal(err)
	}

	replicas := newReplicaSet(t, dsn, master, clock.path)
	for _, name := range []string{"r1", "r2", "r3"} {
		replicas.start(name)
	}
	done := make(chan struct{})
	killed := make(chan int)
	go func() { killed <- replicas.killAtRandom(done) }()
	const overdue = 10 * time.Minute
	sim := simStart
	for sim.Before(simStart.Add(simulate)) {
		sim = sim.Add(10 * time.Minute)
		mustDo(t, clock.Set(sim))
		waitNotOverdue(t, st, sim.Add(-overdue), sim, replicas)
	}
	close(done)
	kills := <-killed
	// Two more hours without kills: the leases of the last replica killed
	// run out and the others take its rows.
	checkUntil := sim
	for sim.Before(checkUntil.Add(2 * time.Hour)) {
		sim = sim.Add(10 * time.Minute)
		mustDo(t, clock.Set(sim))
		waitNotOverdue(t, st, sim.Add(-overdue), sim, replicas)
	}
	stopSim := sim
	replicas.stopAll()
	var total, duplicates, missed int
	var latest time.Duration // the longest a rotation fired after its due time
	for i := range topics {
		name := fmt.Sprintf("site/%02d/data", i)
		missedBefore, duplicatesBefore := missed, duplicates
		recs := listRotations(t, admin, name)
		total += len(recs)
		info, err := admin.GetTopic(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if int(info.KeyVersion) != len(recs)+1 {
			t.Errorf("%s: key version %d after %d recorded rotations", name, info.KeyVersion, len(recs))
		}
		due := make([]time.Time, len(recs))
		for j, r := range recs {
			due[j] = r.DueAt
			latest = max(latest, r.FiredAt.Sub(r.DueAt))
			if r.FiredAt.Before(r.DueAt) {
				t.Errorf("%s: rotation due at %v fired early at %v", name, r.DueAt, r.FiredAt)
			}
		}
		slices.SortFunc(due, time.Time.Compare)
		// Boundaries are one period apart, give or take the jitter: a
		// repeated due time is a duplicate, a gap of two periods a miss.
		prev := policy.CreatedAt
		for _, d := range due {
			gap := d.Sub(prev)
			switch {
			case gap <= 0 && !prev.Equal(policy.CreatedAt):
				duplicates++
			case prev.Equal(policy.CreatedAt) && gap > period+jitter:
				missed++
			case !prev.Equal(policy.CreatedAt) && gap > period+jitter:
				missed += int(gap / period)
				t.Logf("%s: no rotation due between %v and %v", name, prev, d)
			}
			prev = d
		}
		if checkUntil.Sub(prev) > period+jitter {
			missed += int(checkUntil.Sub(prev) / period)
			t.Logf("%s: no rotation due after %v (checked until %v)", name, prev, checkUntil)
		}
		if missed > missedBefore || duplicates > duplicatesBefore {
			logSchedule(t, st, name, info, recs)
		}
	}
	t.Logf("3 replicas, %d SIGKILLs over a simulated %v: %d rotations of %d topics, %d duplicates, %d missed; fired at most %v after due",
		kills, stopSim.Sub(simStart).Round(time.Hour), total, topics, duplicates, missed, latest.Round(time.Minute))
	if duplicates != 0 || missed != 0 {
		t.Fatalf("%d duplicate and %d missed rotations\n%s", duplicates, missed, replicas.output())
	}
	if want := int(stopSim.Sub(policy.CreatedAt)/period) * topics; total < want-topics {
		t.Fatalf("%d rotations, want about %d", total, want)
	}
	if kills < 10 {
		t.Fatalf("only %d kills: the test did not exercise crashes", kills)
	}
}

// waitNotOverdue waits until no schedule row due before until waits for a
// replica: each is rescheduled, or held by a replica that was killed (its
// lease runs out as the clock moves). A row held by a running replica is
// waited for too, for up to heldWait: simulated time passes only as fast
// as the replicas work, as real time would. Without that wait, a replica
// slowed by a loaded machine lost its lease to another while the clock
// raced on, and the rotation fired after the next boundary, which it then
// absorbed (a missed rotation).
func waitNotOverdue(t *testing.T, st store.Store, until, now time.Time, replicas *replicaSet) {
	t.Helper()
	const heldWait = 5 * time.Second
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		var rows []store.Due
		err := st.View(context.Background(), func(tx store.Tx) (err error) {
			rows, err = tx.(store.PolicyTx).ListDue(until, store.Due{}, 1000)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		n, held := 0, 0
		for _, row := range rows {
			switch {
			case !row.LeaseUntil.After(now):
				n++
			case replicas.running(row.LeaseOwner):
				held++
			}
		}
		if n == 0 && (held == 0 || time.Since(start) > heldWait) {
			return
		}
		if time.Now().After(deadline) {
			var rows []store.Due
			_ = st.View(context.Background(), func(tx store.Tx) (err error) {
				rows, err = tx.(store.PolicyTx).ListDue(until, store.Due{}, 5)
				return err
			})
			t.Fatalf("%d schedule rows due before %v still wait after 30 s: %+v\n%s", n, until, rows, replicas.output())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func listRotations(t *testing.T, svc *c2.Service, target string) []c2.Rotation {
	t.Helper()
	var all []c2.Rotation
	var after int64
	for {
		page, err := svc.ListRotations(context.Background(), c2.RotationFilter{Target: target}, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all
		}
		after = page[len(page)-1].ID
	}
}

// replicaSet runs the replicas as child processes of the test binary.
// Each start of a replica is a new lease owner ("r1.3", its third start),
// so that the test tells the rows a running replica holds from those a
// killed one left.
type replicaSet struct {
	t      *testing.T
	env    []string
	mu     sync.Mutex
	procs  map[string]*exec.Cmd
	owners map[string]string // replica -> lease owner of its running process
	starts map[string]int
	logs   bytes.Buffer
	waited map[*exec.Cmd]chan struct{}
}

func newReplicaSet(t *testing.T, dsn string, master []byte, clockPath string) *replicaSet {
	r := &replicaSet{t: t, procs: map[string]*exec.Cmd{}, waited: map[*exec.Cmd]chan struct{}{},
		owners: map[string]string{}, starts: map[string]int{},
		env: append(os.Environ(), envReplicaDSN+"="+dsn, envMaster+"="+hex.EncodeToString(master),
			envReplicaClock+"="+clockPath)}
	t.Cleanup(r.stopAll)
	return r
}

func (r *replicaSet) start(name string) {
	r.mu.Lock()
	r.starts[name]++
	owner := fmt.Sprintf("%s.%d", name, r.starts[name])
	r.mu.Unlock()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSchedulerReplicaChild$", "-test.count=1")
	cmd.Env = append(r.env, envReplica+"="+owner)
	cmd.Stdout, cmd.Stderr = &lockedWriter{r}, &lockedWriter{r}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.procs[name], r.waited[cmd], r.owners[name] = cmd, done, owner
	r.mu.Unlock()
}

// running reports whether owner is the lease owner of a replica's running
// process.
func (r *replicaSet) running(owner string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.owners {
		if o == owner {
			return true
		}
	}
	return false
}

func (r *replicaSet) kill(name string) {
	r.mu.Lock()
	cmd := r.procs[name]
	done := r.waited[cmd]
	delete(r.procs, name)
	delete(r.owners, name)
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// killAtRandom kills a random replica with SIGKILL every 20 to 120 ms and
// starts it again up to 50 ms later, until done; it returns the kills.
func (r *replicaSet) killAtRandom(done <-chan struct{}) int {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for {
		select {
		case <-done:
			return kills
		case <-time.After(time.Duration(20+rng.IntN(100)) * time.Millisecond):
		}
		name := []string{"r1", "r2", "r3"}[rng.IntN(3)]
		r.kill(name)
		kills++
		time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		r.start(name)
	}
}

func (r *replicaSet) stopAll() {
	r.mu.Lock()
	procs := r.procs
	r.procs, r.owners = map[string]*exec.Cmd{}, map[string]string{}
	r.mu.Unlock()
	for _, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, cmd := range procs {
		select {
		case <-r.waited[cmd]:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-r.waited[cmd]
		}
	}
}

func (r *replicaSet) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// lockedWriter collects the replicas' output.
type lockedWriter struct{ r *replicaSet }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.logs.Write(p)
}

// logSchedule logs what the store holds about a topic the check found a
// rotation missing or repeated for: its key, its schedule row and every
// rotation record.
func logSchedule(t *testing.T, st store.Store, topic string, info c2.TopicInfo, recs []c2.Rotation) {
	t.Helper()
	t.Logf("%s: key version %d made %v", topic, info.KeyVersion, info.RotatedAt)
	err := st.View(context.Background(), func(tx store.Tx) error {
		row, err := tx.(store.PolicyTx).GetDue(store.TargetTopic, topic)
		t.Logf("%s: schedule row %+v (%v)", topic, row, err)
		return nil
	})
	if err != nil {
		t.Log(err)
	}
	for _, r := range recs {
		t.Logf("%s: rotation %d to version %d due %v fired %v by %s: %s", topic, r.ID, r.Version, r.DueAt, r.FiredAt, r.Owner, r.State)
	}
}
