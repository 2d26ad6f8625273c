package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireTools fails the test, naming the install script, when a program
// the runner needs is missing.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if !hasCommand(name) {
			t.Fatalf("%s is not installed: run scripts/install-bench-deps.sh (qemu-user, valgrind, gcc)", name)
		}
	}
}

func testRoot(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestRunnerOnANativeAndAnEmulatedTarget runs the whole pipeline for amd64
// (native, callgrind) and s390x (big-endian, qemu-user and the plugin) on
// two cheap benchmarks: build, footprint, core tests, timing, counting.
func TestRunnerOnANativeAndAnEmulatedTarget(t *testing.T) {
	requireTools(t, "go", "valgrind", "qemu-s390x", "cc")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	targets, err := selectTargets("amd64,s390x")
	if err != nil {
		t.Fatal(err)
	}
	raw := t.TempDir()
	var log bytes.Buffer
	r := &runner{
		root: testRoot(t), work: t.TempDir(), rawDir: raw, progress: newProgress(&log, names(targets)),
		opts: options{
			bench: "^Benchmark(HashTopic|FootprintCachedTopic)$", benchtime: "20x", count: 1,
			nativeBenchtime: "20x", nativeCount: 2, insn: true, insnBudget: 10 * time.Millisecond, insnRepeats: 1,
			nativeBudget: time.Millisecond, tests: true, jobs: 2,
		},
	}
	results := r.runAll(ctx, targets)
	if err := failures(results); err != nil {
		t.Fatalf("%v\nprogress:\n%s\nerror logs:\n%s", err, log.String(), errorLogs(t, r, targets))
	}
	for _, res := range results {
		if res.Tests == nil || !res.Tests.Passed {
			t.Errorf("%s: core tests %+v", res.Name, res.Tests)
		}
		hash, ok := res.benchmark("HashTopic")
		if !ok || hash.Metrics["ns/op"] <= 0 || hash.Metrics["allocs/op"] != 1 {
			t.Errorf("%s: HashTopic = %+v", res.Name, hash)
		}
		// One SHA3-256 over a 38-byte name: thousands of instructions,
		// far from the millions a broken difference would give.
		if hash.InsnPerOp < 1000 || hash.InsnPerOp > 100000 {
			t.Errorf("%s: HashTopic counted %v instructions per operation", res.Name, hash.InsnPerOp)
		}
		cached, ok := res.benchmark("FootprintCachedTopic")
		if !ok || cached.InsnPerOp != 0 || cached.Metrics["heap-B/name"] <= 0 {
			t.Errorf("%s: FootprintCachedTopic = %+v, want a heap figure and no count", res.Name, cached)
		}
		if f := res.Footprint; f == nil || f.DeviceBytes <= f.GoFloor || f.GoFloor <= 0 {
			t.Errorf("%s: footprint %+v", res.Name, f)
		}
	}
	amd64, s390x := results[0], results[1]
	if amd64.Emulated || amd64.InsnCounter != "callgrind" || len(amd64.Tests.Skipped) != 0 {
		t.Errorf("amd64 = %+v, want native, callgrind, nothing skipped", amd64)
	}
	if !s390x.Emulated || s390x.InsnCounter != "QEMU plugin" || len(s390x.Tests.Skipped) != 2 {
		t.Errorf("s390x = %+v, want emulated, QEMU plugin, the re-executing tests skipped", s390x)
	}
	if hash, _ := amd64.benchmark("HashTopic"); hash.Runs != 2 {
		t.Errorf("amd64 HashTopic ran %d times, want the native count 2", hash.Runs)
	}
	data, err := os.ReadFile(filepath.Join(raw, "s390x.txt"))
	if err != nil || !strings.Contains(string(data), "goarch: s390x") {
		t.Errorf("raw s390x output: %v\n%s", err, data)
	}
	if !strings.Contains(log.String(), "s390x            icount    done") {
		t.Errorf("progress did not log the s390x count:\n%s", log.String())
	}
}

// TestRunnerStopsATargetWhoseTestsFail checks that a failing core test
// keeps the target's benchmarks from running and is reported.
func TestRunnerStopsATargetWhoseTestsFail(t *testing.T) {
	requireTools(t, "go")
	root := testRoot(t)
	targets, _ := selectTargets("amd64")
	r := &runner{root: root, work: t.TempDir(), rawDir: t.TempDir(), progress: newProgress(&bytes.Buffer{}, names(targets)),
		opts: options{bench: ".", benchtime: "1x", count: 1, nativeBenchtime: "1x", nativeCount: 1, tests: true, jobs: 1}}
	// A test binary that cannot find its vectors fails: run it from a
	// directory without testdata by pointing the runner at a copy of the
	// module root's layout that lacks it.
	dir := filepath.Join(r.work, "amd64")
	if err := buildTarget(context.Background(), root, dir, targets[0]); err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	for _, pkg := range corePackages {
		if err := os.MkdirAll(filepath.Join(fake, pkg), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.root = fake
	res := r.runTests(context.Background(), dir, targets[0], nil)
	if res.Passed || !strings.Contains(res.Failure, "e4:") || !strings.Contains(res.Failure, "testdata") {
		t.Errorf("tests without their vectors = %+v, want a failure in e4 naming testdata", res)
	}
}

// TestBuildOnlyBundleRunsOnADeviceAndMerges builds the amd64 bundle, runs
// its script as a device would (this machine is one), and merges the
// output.
func TestBuildOnlyBundleRunsOnADeviceAndMerges(t *testing.T) {
	requireTools(t, "go", "sh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	targets, _ := selectTargets("amd64")
	dir := t.TempDir()
	if err := buildBundle(ctx, testRoot(t), dir, targets, newProgress(&bytes.Buffer{}, names(targets))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"README.md", "amd64/run.sh", "amd64/bench.test", "amd64/e4.test", "amd64/siv/siv.test", "amd64/store/store.test", "amd64/testdata/e4-vectors.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("bundle lacks %s: %v", f, err)
		}
	}
	readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	if !strings.Contains(string(readme), "| amd64 |") || !strings.Contains(string(readme), "--merge mydevice.txt") {
		t.Errorf("bundle README:\n%s", readme)
	}
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(dir, "amd64", "run.sh"))
	cmd.Env = append(os.Environ(), "BENCH=^BenchmarkHashTopic$", "BENCHTIME=10x", "COUNT=2")
	out, err := cmd.Output()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(dir, "amd64", "tests-*.log"))
		for _, l := range logs {
			text, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", filepath.Base(l), text)
		}
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	outFile := filepath.Join(t.TempDir(), "mydevice.txt")
	if err := os.WriteFile(outFile, out, 0o644); err != nil {
		t.Fatal(err)
	}
	report := sampleReport()
	if err := mergeFiles(report, []string{outFile}); err != nil {
		t.Fatal(err)
	}
	dev := report.Targets[len(report.Targets)-1]
	if dev.Name != "mydevice" || dev.RunsOn != "device" || dev.Tests == nil || !dev.Tests.Passed {
		t.Errorf("merged device = %+v, tests %+v", dev, dev.Tests)
	}
	if hash, ok := dev.benchmark("HashTopic"); !ok || hash.Runs != 2 {
		t.Errorf("merged HashTopic = %+v", hash)
	}
}

// TestEveryBenchmarkRunsOnce runs every benchmark for one iteration on
// this machine: a benchmark that fails (a stale command, a refused
// message) would leave a hole in every architecture's column.
func TestEveryBenchmarkRunsOnce(t *testing.T) {
	requireTools(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	targets, _ := selectTargets("amd64")
	r := &runner{root: testRoot(t), work: t.TempDir(), rawDir: t.TempDir(), progress: newProgress(&bytes.Buffer{}, names(targets)),
		opts: options{bench: ".", nativeBenchtime: "1x", nativeCount: 1}}
	dir := filepath.Join(r.work, "amd64")
	if err := buildTarget(ctx, r.root, dir, targets[0]); err != nil {
		t.Fatal(err)
	}
	benchmarks, _, err := r.runBenchmarks(ctx, dir, targets[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, b := range benchmarks {
		got[b.Name] = true
	}
	var want []string
	for _, size := range []string{"64", "1024", "16384"} {
		for _, op := range []string{"SKProtect", "SKUnprotect", "PKProtect", "PKUnprotect", "SKProtectBatch", "SKUnprotectBatch", "BaselineAESGCMSeal", "BaselineEd25519Sign", "BaselineEd25519Verify"} {
			want = append(want, op+"/"+size)
		}
	}
	want = append(want, "CommandSetTopicKey", "CommandSetPubKey", "HashTopic", "KeyFromPassword", "BaselineSerialChain16K", "FootprintTopicKey", "FootprintCachedTopic",
		"BoundAESChain16K", "CMAC16K", "CMACVsBound16K", "UnprotectBatchVsSingle1K")
	for _, size := range []string{"64", "1024"} {
		want = append(want, "FastSKProtect/"+size, "FastSKUnprotect/"+size, "FastVsDefault/Protect/"+size, "FastVsDefault/Unprotect/"+size)
	}
	want = append(want, "FastHashTopic/v1", "FastHashTopic/fast")
	for _, name := range want {
		if !got[name] {
			t.Errorf("benchmark %s did not run", name)
		}
	}
	if len(benchmarks) != len(want) {
		t.Errorf("%d benchmarks ran, want %d", len(benchmarks), len(want))
	}
}

// TestRunnerNamesTheInstallScriptWhenTheEmulatorIsMissing checks that a
// target without its qemu-user binary fails with a message saying what to
// install, and gets no benchmarks.
func TestRunnerNamesTheInstallScriptWhenTheEmulatorIsMissing(t *testing.T) {
	requireTools(t, "go")
	missing := target{Name: "s390x-without-qemu", GOARCH: "s390x", QEMU: "no-such-arch"}
	r := &runner{root: testRoot(t), work: t.TempDir(), rawDir: t.TempDir(), progress: newProgress(&bytes.Buffer{}, []string{missing.Name}),
		opts: options{bench: ".", benchtime: "1x", count: 1, tests: true, insn: true}}
	res := r.runTarget(context.Background(), missing)
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "qemu-no-such-arch") || !strings.Contains(res.Errors[0], "install-bench-deps.sh") {
		t.Errorf("errors = %q, want the missing emulator and the install script", res.Errors)
	}
	if len(res.Benchmarks) != 0 || res.Tests != nil {
		t.Errorf("a target without emulator ran tests %+v or benchmarks %d", res.Tests, len(res.Benchmarks))
	}
	if err := failures([]*Target{res}); err == nil || !strings.Contains(err.Error(), missing.Name) {
		t.Errorf("failures = %v, want the target named", err)
	}
}

// errorLogs returns what the runner wrote to the targets' error logs, so
// that a failure in CI shows which test failed and why.
func errorLogs(t *testing.T, r *runner, targets []target) string {
	t.Helper()
	var all strings.Builder
	for _, tg := range targets {
		text, err := os.ReadFile(r.errorLog(tg))
		if err == nil {
			fmt.Fprintf(&all, "--- %s\n%s", tg.Name, text)
		}
	}
	return all.String()
}
