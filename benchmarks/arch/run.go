package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// options are the runner's settings from the command line.
type options struct {
	bench           string        // -test.bench pattern
	benchtime       string        // per benchmark, emulated targets
	count           int           // runs per benchmark, emulated targets
	nativeBenchtime string        // per benchmark, native targets
	nativeCount     int           // runs per benchmark, native targets
	insn            bool          // count instructions per operation
	insnBudget      time.Duration // emulated time a count's iterations take
	nativeBudget    time.Duration // native time, multiplied by callgrind's slowdown
	insnRepeats     int           // runs of each count, the least kept
	tests           bool          // run the core tests first
	jobs            int           // targets in parallel
}

// corePackages are the packages whose tests must pass on every target
// before its benchmarks run: the protocol core with its known-answer
// vectors (fast mode's included), AES-SIV with its test vectors, the state
// file format, and fast mode's round-reduced Keccak (checked against
// crypto/sha3, which matters on the big-endian targets).
var corePackages = []string{"e4", "e4/siv", "e4/store", "e4/internal/keccak"}

// emulatedSkips are the core tests that cannot run under qemu-user: they
// re-execute the test binary as a child process to kill it at random
// instants, and without binfmt_misc the kernel cannot execute a foreign
// binary. They test the file system, not the architecture.
var emulatedSkips = []string{"TestClientStateSurvivesKill", "TestCrash"}

// runner runs the pipeline of every target.
type runner struct {
	root     string // module root
	work     string // binaries and scratch files
	rawDir   string // raw benchmark output, one file per target
	opts     options
	progress *progress
	// timing is held exclusively while a native target's benchmarks run,
	// and shared by every other step, so that native timings are taken on
	// an otherwise idle runner (emulated timings need no such care).
	timing sync.RWMutex
	// pluginLib is the compiled QEMU plugin; pluginErr says why there is
	// none.
	pluginOnce sync.Once
	pluginLib  string
	pluginErr  error
}

// step runs one step of a target under the shared or exclusive timing
// lock, and reports it to the progress display.
func (r *runner) step(t target, name string, exclusive bool, fn func() error) error {
	if exclusive {
		r.timing.Lock()
		defer r.timing.Unlock()
	} else {
		r.timing.RLock()
		defer r.timing.RUnlock()
	}
	r.progress.begin(t.Name, name)
	err := fn()
	r.progress.end(t.Name, err)
	return err
}

// runAll runs every target, jobs at a time, and returns their results in
// the order given.
func (r *runner) runAll(ctx context.Context, targets []target) []*Target {
	results := make([]*Target, len(targets))
	queue := make(chan int)
	var wg sync.WaitGroup
	for range max(r.opts.jobs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range queue {
				results[i] = r.runTarget(ctx, targets[i])
			}
		}()
	}
	for i := range targets {
		queue <- i
	}
	close(queue)
	wg.Wait()
	return results
}

// runTarget builds, tests, benchmarks and measures one target. A failing
// step is recorded in the result; failing core tests stop the target
// before its benchmarks.
func (r *runner) runTarget(ctx context.Context, t target) *Target {
	res := &Target{Name: t.Name, GOARCH: t.GOARCH, Variant: t.variant(), RunsOn: t.runsOn(), Emulated: !t.native()}
	dir := filepath.Join(r.work, t.Name)
	os.Remove(r.errorLog(t)) // the log of an earlier run
	fail := func(step string, err error) *Target {
		r.logError(t, step, err)
		res.Errors = append(res.Errors, step+": "+firstLine(err.Error()))
		r.progress.finish(t.Name, "FAILED in "+step)
		return res
	}
	if err := r.step(t, "build", false, func() error { return buildTarget(ctx, r.root, dir, t) }); err != nil {
		return fail("build", err)
	}
	emulator := t.emulator(hasCommand("qemu-" + t.QEMU))
	if emulator != nil && !hasCommand(emulator[0]) {
		return fail("emulator", fmt.Errorf("neither qemu-%s nor qemu-%s-static is installed: run scripts/install-bench-deps.sh", t.QEMU, t.QEMU))
	}
	if err := r.step(t, "footprint", false, func() error {
		fp, err := measureFootprint(ctx, dir, emulator)
		res.Footprint = fp
		return err
	}); err != nil {
		return fail("footprint", err)
	}
	if r.opts.tests {
		if err := r.step(t, "test", false, func() error {
			res.Tests = r.runTests(ctx, dir, t, emulator)
			if !res.Tests.Passed {
				return errors.New(res.Tests.Failure)
			}
			return nil
		}); err != nil {
			return fail("core tests", err)
		}
	}
	if err := r.step(t, "bench", t.native(), func() error {
		benchmarks, cpu, err := r.runBenchmarks(ctx, dir, t, emulator)
		res.Benchmarks, res.CPU = benchmarks, cpu
		return err
	}); err != nil && len(res.Benchmarks) == 0 {
		return fail("benchmarks", err)
	} else if err != nil {
		r.logError(t, "benchmarks", err)
		res.Errors = append(res.Errors, "benchmarks: "+firstLine(err.Error()))
	}
	if r.opts.insn {
		if err := r.step(t, "icount", false, func() error { return r.countTarget(ctx, dir, t, res) }); err != nil {
			r.logError(t, "instruction counts", err)
			res.Errors = append(res.Errors, "instruction counts: "+firstLine(err.Error()))
		}
	}
	r.progress.finish(t.Name, r.verdict(res))
	return res
}

func (r *runner) verdict(res *Target) string {
	v := fmt.Sprintf("done: %d benchmarks", len(res.Benchmarks))
	if res.Tests != nil && res.Tests.Passed {
		v = "core tests passed, " + v
	}
	if res.InsnCounter != "" {
		v += ", instructions counted by " + res.InsnCounter
	}
	if len(res.Errors) > 0 {
		v += " (" + strings.Join(res.Errors, "; ") + ")"
	}
	return v
}

// Binary names inside a target's build directory.
const (
	benchBinary  = "bench.test"
	deviceBinary = "device"
	nopBinary    = "nop"
)

// testBinary is the name of a core package's test binary.
func testBinary(pkg string) string { return strings.ReplaceAll(pkg, "/", "_") + ".test" }

// buildTarget cross-compiles the core test binaries, the benchmark binary
// and the two footprint programs into dir.
func buildTarget(ctx context.Context, root, dir string, t target) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	env := t.buildEnv()
	builds := [][]string{{"go", "test", "-c", "-o", filepath.Join(dir, benchBinary), "./benchmarks"}}
	for _, pkg := range corePackages {
		builds = append(builds, []string{"go", "test", "-c", "-o", filepath.Join(dir, testBinary(pkg)), "./" + pkg})
	}
	for _, prog := range []string{deviceBinary, nopBinary} {
		builds = append(builds, []string{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, prog), "./benchmarks/minimal/" + prog})
	}
	for _, argv := range builds {
		if err := runQuiet(ctx, root, env, argv); err != nil {
			return err
		}
	}
	return nil
}

// measureFootprint records the sizes of the stripped programs, after
// running the device program once to check that it works on the target.
func measureFootprint(ctx context.Context, dir string, emulator []string) (*Footprint, error) {
	out, err := runOutput(ctx, dir, nil, append(append([]string{}, emulator...), filepath.Join(dir, deviceBinary)))
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(out), "protected and unprotected") {
		return nil, fmt.Errorf("device program printed %q", out)
	}
	device, err := os.Stat(filepath.Join(dir, deviceBinary))
	if err != nil {
		return nil, err
	}
	nop, err := os.Stat(filepath.Join(dir, nopBinary))
	if err != nil {
		return nil, err
	}
	return &Footprint{DeviceBytes: device.Size(), GoFloor: nop.Size()}, nil
}

// runTests runs the core test binaries, each in its package directory so
// that the tests find their testdata (go test -exec does the same).
func (r *runner) runTests(ctx context.Context, dir string, t target, emulator []string) *TestResult {
	res := &TestResult{Passed: true, Packages: corePackages}
	args := []string{"-test.count=1", "-test.timeout=15m"}
	if !t.native() {
		args = append(args, "-test.skip=^("+strings.Join(emulatedSkips, "|")+")$")
		res.Skipped = emulatedSkips
		res.SkipReason = "they re-execute the test binary, which qemu-user cannot do without binfmt_misc; they test the file system, not the CPU"
	}
	for _, pkg := range corePackages {
		r.progress.detail(t.Name, pkg)
		argv := append(append(append([]string{}, emulator...), filepath.Join(dir, testBinary(pkg))), args...)
		if _, err := runOutput(ctx, filepath.Join(r.root, pkg), nil, argv); err != nil {
			res.Passed, res.Failure = false, pkg+": "+err.Error()
			return res
		}
	}
	return res
}

// runBenchmarks runs the benchmark binary once with every benchmark,
// saving its output to rawDir/<target>.txt, and returns the summaries.
func (r *runner) runBenchmarks(ctx context.Context, dir string, t target, emulator []string) ([]Benchmark, string, error) {
	benchtime, count := r.opts.benchtime, r.opts.count
	if t.native() {
		benchtime, count = r.opts.nativeBenchtime, r.opts.nativeCount
	}
	raw, err := os.Create(filepath.Join(r.rawDir, t.Name+".txt"))
	if err != nil {
		return nil, "", err
	}
	defer raw.Close()
	done := 0
	lines := &lineWriter{
		onLine: func(line string) {
			if benchLine.MatchString(line) {
				done++
			}
		},
		onPartial: func(start string) {
			if name, ok := strings.CutPrefix(start, "Benchmark"); ok {
				if fields := strings.Fields(name); len(fields) > 0 {
					r.progress.detail(t.Name, fmt.Sprintf("%d done, running %s", done, fields[0]))
				}
			}
		},
	}
	argv := append(append([]string{}, emulator...), filepath.Join(dir, benchBinary),
		"-test.run=^$", "-test.bench="+r.opts.bench, "-test.benchmem",
		"-test.benchtime="+benchtime, fmt.Sprintf("-test.count=%d", count), "-test.timeout=60m")
	var out strings.Builder
	runErr := runStreaming(ctx, filepath.Join(r.root, "benchmarks"), nil, argv, io.MultiWriter(raw, &out, lines))
	parsed, err := parseBenchOutput(strings.NewReader(out.String()))
	if err != nil {
		return nil, "", errors.Join(runErr, err)
	}
	switch {
	case runErr != nil && len(parsed.Failures) > 0:
		// Some benchmarks failed, the others still count.
		return parsed.benchmarks(), parsed.CPU, fmt.Errorf("%s\n%w\n%s", strings.Join(parsed.Failures, "; "), runErr, tail(out.String(), 30))
	case runErr != nil:
		return nil, "", fmt.Errorf("%w\n%s", runErr, tail(out.String(), 30))
	case len(parsed.Order) == 0:
		return nil, "", fmt.Errorf("no benchmark matched %q", r.opts.bench)
	}
	return parsed.benchmarks(), parsed.CPU, nil
}

// counterFor returns the instruction counter of a target: callgrind for a
// native one, the QEMU plugin for an emulated one.
func (r *runner) counterFor(ctx context.Context, t target) (insnCounter, error) {
	if t.native() {
		if !hasCommand("valgrind") {
			return nil, errors.New("valgrind is not installed: run scripts/install-bench-deps.sh")
		}
		return callgrind{scratch: r.work}, nil
	}
	qemu := "qemu-" + t.QEMU
	if !hasCommand(qemu) {
		return nil, fmt.Errorf("%s (Debian's qemu-user, which loads plugins; the -static build cannot) is not installed: run scripts/install-bench-deps.sh", qemu)
	}
	r.pluginOnce.Do(func() { r.pluginLib, r.pluginErr = buildQEMUPlugin(ctx, r.work) })
	if r.pluginErr != nil {
		return nil, r.pluginErr
	}
	return qemuPlugin{library: r.pluginLib, emulator: t.emulator(true), scratch: r.work}, nil
}

// countTarget counts the instructions per operation of every timed
// benchmark of a target (measurement benchmarks are left out).
func (r *runner) countTarget(ctx context.Context, dir string, t target, res *Target) error {
	counter, err := r.counterFor(ctx, t)
	if err != nil {
		return err
	}
	budget := r.opts.insnBudget
	if t.native() {
		budget = r.opts.nativeBudget
	}
	bin := []string{filepath.Join(dir, benchBinary)}
	var failures []error
	for i := range res.Benchmarks {
		b := &res.Benchmarks[i]
		if b.isMeasurement() {
			continue
		}
		r.progress.detail(t.Name, fmt.Sprintf("%d/%d %s", i+1, len(res.Benchmarks), b.Name))
		n := iterations(b.Metrics["ns/op"], budget)
		insn, err := countBenchmark(ctx, counter, filepath.Join(r.root, "benchmarks"), bin, nil, b.Name, n, r.opts.insnRepeats)
		if err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", b.Name, err))
			continue
		}
		b.InsnPerOp, b.InsnIterations = insn, n
	}
	res.InsnCounter = counter.name()
	return errors.Join(failures...)
}

// errorLog is the file logError writes for a target.
func (r *runner) errorLog(t target) string { return filepath.Join(r.rawDir, t.Name+".errors.log") }

// logError appends the whole text of a step's error, output included, to
// rawDir/<target>.errors.log; the tables show its first line.
func (r *runner) logError(t target, step string, err error) {
	f, ferr := os.OpenFile(r.errorLog(t), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if ferr != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "== %s %s\n%v\n\n", time.Now().UTC().Format(time.RFC3339), step, err)
}

// hasCommand reports whether name is on PATH.
func hasCommand(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}
