package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deviceOutput is what run.sh prints on a device: the tests verdict, then
// go test -bench output with -count 3, one benchmark failing.
const deviceOutput = `# core tests: passed (e4, e4/siv, e4/store)
goos: linux
goarch: arm
pkg: github.com/e4-iot/e4kit/benchmarks
cpu: ARMv7 Processor rev 5 (v7l)
BenchmarkSKProtect/64-4   	   20000	     52000 ns/op	   1.23 MB/s	       0 B/op	       0 allocs/op
BenchmarkSKProtect/64-4   	   20000	     50000 ns/op	   1.28 MB/s	       0 B/op	       0 allocs/op
BenchmarkSKProtect/64-4   	   20000	     90000 ns/op	   0.71 MB/s	       0 B/op	       0 allocs/op
BenchmarkHashTopic        	  100000	      4000 ns/op	      48 B/op	       1 allocs/op
BenchmarkHashTopic        	  100000	      3000 ns/op	      48 B/op	       1 allocs/op
BenchmarkFootprintTopicKey-4	      10	  20000000 ns/op	      1510 heap-B/topic	 2647522 B/op	    8058 allocs/op
--- FAIL: BenchmarkKeyFromPassword
    core_test.go:1: out of memory
PASS
`

func TestParseBenchOutputReadsHeaderRunsAndVerdicts(t *testing.T) {
	out, err := parseBenchOutput(strings.NewReader(deviceOutput))
	if err != nil {
		t.Fatal(err)
	}
	if out.GOOS != "linux" || out.GOARCH != "arm" || out.CPU != "ARMv7 Processor rev 5 (v7l)" {
		t.Errorf("header = %q %q %q", out.GOOS, out.GOARCH, out.CPU)
	}
	if want := []string{"SKProtect/64", "HashTopic", "FootprintTopicKey"}; strings.Join(out.Order, ",") != strings.Join(want, ",") {
		t.Errorf("order = %v, want %v (GOMAXPROCS suffix stripped)", out.Order, want)
	}
	if n := len(out.Runs["SKProtect/64"]); n != 3 {
		t.Errorf("%d runs of SKProtect/64, want 3", n)
	}
	if out.Tests != "passed (e4, e4/siv, e4/store)" {
		t.Errorf("tests verdict = %q", out.Tests)
	}
	if len(out.Failures) != 1 || !strings.Contains(out.Failures[0], "KeyFromPassword") {
		t.Errorf("failures = %q", out.Failures)
	}
}

func TestBenchmarksTakeTheMedianOfEachUnit(t *testing.T) {
	out, err := parseBenchOutput(strings.NewReader(deviceOutput))
	if err != nil {
		t.Fatal(err)
	}
	list := out.benchmarks()
	sk := list[0]
	if sk.Name != "SKProtect/64" || sk.Runs != 3 || sk.Metrics["ns/op"] != 52000 || sk.Metrics["MB/s"] != 1.23 {
		t.Errorf("SKProtect/64 = %+v, want 3 runs, median 52000 ns/op and 1.23 MB/s", sk)
	}
	if hash := list[1]; hash.Metrics["ns/op"] != 3500 {
		t.Errorf("HashTopic median of 4000 and 3000 = %v, want 3500", hash.Metrics["ns/op"])
	}
	if sk.isMeasurement() || !list[2].isMeasurement() {
		t.Error("only the benchmark with a custom unit is a measurement")
	}
	if units := list[2].customUnits(); len(units) != 1 || units[0] != "heap-B/topic" {
		t.Errorf("custom units = %v", units)
	}
}

func TestParseBenchOutputRejectsBrokenBenchmarkLines(t *testing.T) {
	for _, line := range []string{
		"BenchmarkX-2   100   12 ns/op   7",          // value without unit
		"BenchmarkX-2   100   twelve ns/op",          // not a number
		"BenchmarkX-2   100   48 B/op   1 allocs/op", // no ns/op
	} {
		if _, err := parseBenchOutput(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("%q parsed without error", line)
		}
	}
}

func TestBenchFilterSelectsExactlyOneBenchmark(t *testing.T) {
	filter := benchFilter("SKProtect/64")
	if filter != "^BenchmarkSKProtect$/^64$" {
		t.Fatalf("filter = %q", filter)
	}
	levels := strings.Split(filter, "/")
	top, sub := regexp.MustCompile(levels[0]), regexp.MustCompile(levels[1])
	if !top.MatchString("BenchmarkSKProtect") || top.MatchString("BenchmarkSKProtectX") || sub.MatchString("640") {
		t.Error("filter matches other benchmarks")
	}
	if got := benchFilter("A.B"); got != `^BenchmarkA\.B$` {
		t.Errorf("metacharacters not quoted: %q", got)
	}
}

func TestMergeAddsDevicesAndReplacesByName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pi2.txt")
	if err := os.WriteFile(path, []byte(deviceOutput), 0o644); err != nil {
		t.Fatal(err)
	}
	report := &Report{Targets: []*Target{{Name: "amd64", RunsOn: "native"}, {Name: "pi2", RunsOn: "device"}}}
	if err := mergeFiles(report, []string{path, "renamed=" + path}); err != nil {
		t.Fatal(err)
	}
	if len(report.Targets) != 3 {
		t.Fatalf("%d targets, want amd64, pi2 (replaced in place), renamed", len(report.Targets))
	}
	pi := report.Targets[1]
	if pi.Name != "pi2" || pi.RunsOn != "device" || pi.GOARCH != "arm" || pi.Emulated || len(pi.Benchmarks) != 3 {
		t.Errorf("merged device = %+v", pi)
	}
	if pi.Tests == nil || !pi.Tests.Passed {
		t.Errorf("device tests = %+v, want passed", pi.Tests)
	}
	if len(pi.Errors) != 1 {
		t.Errorf("device errors = %q, want the failed benchmark", pi.Errors)
	}
	if report.Targets[2].Name != "renamed" {
		t.Errorf("label=file named the device %q", report.Targets[2].Name)
	}
	ops, measurements := report.operations()
	if strings.Join(ops, ",") != "SKProtect/64,HashTopic" || strings.Join(measurements, ",") != "FootprintTopicKey" {
		t.Errorf("operations %v, measurements %v", ops, measurements)
	}
}

func TestMergeKeepsADeviceWhoseTestsFailedAndRefusesOtherOutput(t *testing.T) {
	dir := t.TempDir()
	failed := filepath.Join(dir, "router.txt")
	if err := os.WriteFile(failed, []byte("# core tests: FAILED in e4/siv (see tests-*.log)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	report := &Report{}
	if err := mergeFiles(report, []string{failed}); err != nil {
		t.Fatal(err)
	}
	if tests := report.Targets[0].Tests; tests == nil || tests.Passed || !strings.Contains(tests.Failure, "e4/siv") {
		t.Errorf("device tests = %+v, want failed in e4/siv", tests)
	}
	unrelated := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(unrelated, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mergeFiles(&Report{}, []string{unrelated}); err == nil || !strings.Contains(err.Error(), "no benchmark lines") {
		t.Errorf("err = %v, want no benchmark lines", err)
	}
	if err := mergeFiles(&Report{}, []string{filepath.Join(dir, "missing.txt")}); err == nil {
		t.Error("a missing file merged without error")
	}
}

func TestMergeArgLabels(t *testing.T) {
	for _, c := range []struct{ arg, label, path string }{
		{"pi-zero=out.txt", "pi-zero", "out.txt"},
		{"results/router.txt", "router", "results/router.txt"},
		{"dir/a=b.txt", "a=b", "dir/a=b.txt"},
	} {
		label, path := mergeArg(c.arg)
		if label != c.label || path != c.path {
			t.Errorf("mergeArg(%q) = %q, %q; want %q, %q", c.arg, label, path, c.label, c.path)
		}
	}
}

func TestReadReportRoundTripsAndToleratesAMissingFile(t *testing.T) {
	dir := t.TempDir()
	empty, err := readReport(filepath.Join(dir, "results.json"))
	if err != nil || len(empty.Targets) != 0 {
		t.Fatalf("missing file: %+v, %v", empty, err)
	}
	r := sampleReport()
	if err := writeOutputs(dir, r); err != nil {
		t.Fatal(err)
	}
	back, err := readReport(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := back.Targets[1].benchmark("SKProtect/64")
	if !ok || b.InsnPerOp != 16800 || b.Metrics["ns/op"] != 13600 || !back.Targets[1].Emulated {
		t.Errorf("round trip lost data: %+v", back.Targets[1])
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readReport(filepath.Join(dir, "results.json")); err == nil {
		t.Error("a corrupt results.json read without error")
	}
}

func TestSelectTargets(t *testing.T) {
	all, err := selectTargets("all")
	if err != nil || len(all) != 11 {
		t.Fatalf("all = %d targets, %v", len(all), err)
	}
	some, err := selectTargets("s390x, amd64")
	if err != nil || len(some) != 2 || some[0].Name != "amd64" || some[1].Name != "s390x" {
		t.Errorf("selection = %v, %v; want amd64, s390x in table order", some, err)
	}
	if _, err := selectTargets("amd64,avr"); err == nil || !strings.Contains(err.Error(), "avr") {
		t.Errorf("unknown architecture: err = %v", err)
	}
	if _, err := selectTargets(","); err == nil {
		t.Error("an empty selection was accepted")
	}
}

func TestTargetsRunNativelyOrUnderTheirQEMUCPU(t *testing.T) {
	arm6, _ := selectTargets("arm-v6")
	emu := arm6[0].emulator(true)
	if strings.Join(emu, " ") != "qemu-arm -cpu arm1176" {
		t.Errorf("arm-v6 emulator = %v", emu)
	}
	if got := strings.Join(arm6[0].emulator(false), " "); got != "qemu-arm-static -cpu arm1176" {
		t.Errorf("arm-v6 static emulator = %v", got)
	}
	env := strings.Join(arm6[0].buildEnv(), " ")
	if !strings.Contains(env, "CGO_ENABLED=0") || !strings.Contains(env, "GOARM=6") || !strings.Contains(env, "GOARCH=arm") {
		t.Errorf("arm-v6 build env = %s", env)
	}
	for _, tg := range allTargets {
		if tg.native() != (tg.emulator(true) == nil) {
			t.Errorf("%s: native and emulator disagree", tg.Name)
		}
	}
}

func TestLineWriterSplitsLinesAndReportsPartialOnes(t *testing.T) {
	var lines, partials []string
	w := &lineWriter{onLine: func(s string) { lines = append(lines, s) }, onPartial: func(s string) { partials = append(partials, s) }}
	for _, chunk := range []string{"goos: linux\nBenchmarkA-2 \t", "100\t5 ns/op\nBench", "markB"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if strings.Join(lines, "|") != "goos: linux|BenchmarkA-2 \t100\t5 ns/op" {
		t.Errorf("lines = %q", lines)
	}
	if len(partials) != 3 || partials[0] != "BenchmarkA-2 \t" || partials[2] != "BenchmarkB" {
		t.Errorf("partials = %q", partials)
	}
}
