package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleReport has a native target with instruction counts, an emulated
// one, and a device whose tests failed and that lacks an operation.
func sampleReport() *Report {
	return &Report{
		Generated: "2026-01-01T00:00:00Z", Command: "go run ./benchmarks/arch", GoVersion: "go1.26", Host: "test CPU",
		Targets: []*Target{
			{
				Name: "amd64", GOARCH: "amd64", RunsOn: "native", InsnCounter: "callgrind",
				Tests:     &TestResult{Passed: true},
				Footprint: &Footprint{DeviceBytes: 2450000, GoFloor: 1405000},
				Benchmarks: []Benchmark{
					{Name: "SKProtect/64", Runs: 3, Metrics: map[string]float64{"ns/op": 292.4, "B/op": 0, "allocs/op": 0}, InsnPerOp: 2950},
					{Name: "KeyFromPassword", Runs: 3, Metrics: map[string]float64{"ns/op": 117864684, "B/op": 67116328, "allocs/op": 40}, InsnPerOp: 660e6},
					{Name: "FootprintTopicKey", Runs: 3, Metrics: map[string]float64{"ns/op": 2e6, "heap-B/topic": 1350}},
				},
			},
			{
				Name: "s390x", GOARCH: "s390x", RunsOn: "qemu-user", Emulated: true, InsnCounter: "QEMU plugin",
				Tests: &TestResult{Passed: true, Skipped: []string{"TestCrash", "TestKill"}, SkipReason: "they re-execute | themselves"},
				Benchmarks: []Benchmark{
					{Name: "SKProtect/64", Runs: 1, Metrics: map[string]float64{"ns/op": 13600, "B/op": 0, "allocs/op": 0}, InsnPerOp: 16800},
					{Name: "KeyFromPassword", Runs: 1, Metrics: map[string]float64{"ns/op": 2.67e8, "B/op": 67123640, "allocs/op": 51}},
					{Name: "FootprintTopicKey", Runs: 1, Metrics: map[string]float64{"ns/op": 2e7, "heap-B/topic": 1510}},
				},
			},
			{
				Name: "pi<zero>", GOARCH: "arm", RunsOn: "device",
				Tests:      &TestResult{Passed: false, Failure: "FAILED in e4"},
				Benchmarks: []Benchmark{{Name: "SKProtect/64", Runs: 3, Metrics: map[string]float64{"ns/op": 41000, "B/op": 0, "allocs/op": 0}}},
				Errors:     []string{"--- FAIL: BenchmarkKeyFromPassword"},
			},
		},
	}
}

func markdown(t *testing.T, r *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// tableRow returns the row of the table under heading whose first cell is
// name.
func tableRow(t *testing.T, md, heading, name string) string {
	t.Helper()
	_, section, ok := strings.Cut(md, heading)
	if !ok {
		t.Fatalf("no %q section in:\n%s", heading, md)
	}
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "| "+name+" |") {
			return line
		}
	}
	t.Fatalf("no row %q under %q in:\n%s", name, heading, section)
	return ""
}

func TestMarkdownLabelsEmulatedColumnsAndFillsEveryTable(t *testing.T) {
	md := markdown(t, sampleReport())
	header := tableRow(t, md, "### Time per operation", "operation")
	if !strings.Contains(header, "| amd64 |") || !strings.Contains(header, "s390x (emulated)") || !strings.Contains(header, "pi<zero> (device)") {
		t.Errorf("time table header = %q", header)
	}
	if row := tableRow(t, md, "### Time per operation", "SKProtect/64"); row != "| SKProtect/64 | 292 ns | 13.6 µs | 41.0 µs |" {
		t.Errorf("time row = %q", row)
	}
	if row := tableRow(t, md, "### Time per operation", "KeyFromPassword"); row != "| KeyFromPassword | 118 ms | 267 ms | – |" {
		t.Errorf("time row for a missing operation = %q", row)
	}
	if row := tableRow(t, md, "### Instructions per operation", "KeyFromPassword"); row != "| KeyFromPassword | 660 M | – | – |" {
		t.Errorf("instruction row = %q", row)
	}
	if row := tableRow(t, md, "### Memory per operation", "KeyFromPassword"); row != "| KeyFromPassword | 67116328 B, 40 | 67123640 B, 51 | – |" {
		t.Errorf("memory row = %q", row)
	}
	if strings.Contains(md, "| FootprintTopicKey |") {
		t.Error("a measurement benchmark appears as an operation")
	}
}

func TestMarkdownFootprintAndTargetTables(t *testing.T) {
	md := markdown(t, sampleReport())
	if row := tableRow(t, md, "### Footprint", "amd64"); row != "| amd64 | 2.34 MiB | 1.34 MiB | 1021 KiB | 1350 |" {
		t.Errorf("footprint row = %q", row)
	}
	if row := tableRow(t, md, "### Footprint", "pi<zero>"); row != "| pi<zero> | – | – | – | – |" {
		t.Errorf("footprint row without data = %q", row)
	}
	if !strings.Contains(md, "FootprintTopicKey (heap-B/topic)") {
		t.Error("footprint table lacks the measurement's column")
	}
	if row := tableRow(t, md, "Generated", "s390x"); !strings.Contains(row, "| passed, 2 skipped |") {
		t.Errorf("target row = %q, want the skipped tests counted", row)
	}
	if !strings.Contains(md, "\nSkipped: TestCrash, TestKill (they re-execute | themselves).\n") {
		t.Error("the skipped tests and their reason are not listed under the table")
	}
	if row := tableRow(t, md, "Generated", "pi<zero>"); !strings.Contains(row, "**FAILED**") {
		t.Errorf("target row = %q, want FAILED", row)
	}
	if !strings.Contains(md, "**pi<zero>**: --- FAIL: BenchmarkKeyFromPassword") {
		t.Error("the device's failure is not listed")
	}
}

func TestOperationsAreOrderedByGroup(t *testing.T) {
	var benchmarks []Benchmark
	for _, name := range []string{"CommandSetTopicKey", "BaselineAESGCMSeal/64", "SKProtect/64", "Unknown", "PKUnprotect/64", "SKProtect/1024"} {
		benchmarks = append(benchmarks, Benchmark{Name: name, Metrics: map[string]float64{"ns/op": 1}})
	}
	r := &Report{Targets: []*Target{{Name: "amd64", Benchmarks: benchmarks}}}
	ops, _ := r.operations()
	want := "SKProtect/64,SKProtect/1024,PKUnprotect/64,CommandSetTopicKey,BaselineAESGCMSeal/64,Unknown"
	if strings.Join(ops, ",") != want {
		t.Errorf("operations = %v, want %s", ops, want)
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{formatDuration(0.5), "0.50 ns"},
		{formatDuration(292.4), "292 ns"},
		{formatDuration(1909), "1.91 µs"},
		{formatDuration(24119), "24.1 µs"},
		{formatDuration(117864684), "118 ms"},
		{formatDuration(2.5e9), "2.50 s"},
		{formatCount(912), "912"},
		{formatCount(9999), "9999"},
		{formatCount(16800), "16.8 k"},
		{formatCount(1.333e6), "1.33 M"},
		{formatCount(2e9), "2.00 G"},
		{formatBytes(512), "512 B"},
		{formatBytes(1536), "1.50 KiB"},
		{formatBytes(2450000), "2.34 MiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// svgDoc is the part of an SVG chart the tests look at.
type svgDoc struct {
	Rects []struct {
		Width string `xml:"width,attr"`
		Fill  string `xml:"fill,attr"`
	} `xml:"rect"`
	Texts []string `xml:"text"`
}

func chart(t *testing.T, r *Report, op string) svgDoc {
	t.Helper()
	var b bytes.Buffer
	if err := writeChart(&b, r, op); err != nil {
		t.Fatal(err)
	}
	var doc svgDoc
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("chart is not well-formed XML: %v\n%s", err, b.String())
	}
	return doc
}

func TestChartDrawsABarPerTargetAndPanel(t *testing.T) {
	doc := chart(t, sampleReport(), "SKProtect/64")
	// background, 3 time bars, 3 instruction bars, 2 legend swatches
	if len(doc.Rects) != 9 {
		t.Fatalf("%d rects, want 9", len(doc.Rects))
	}
	times, insns := doc.Rects[1:4], doc.Rects[4:7]
	if times[0].Fill != colourNative || times[1].Fill != colourEmulated || times[2].Fill != colourNative {
		t.Errorf("time bar colours = %v %v %v: emulated must be pale", times[0].Fill, times[1].Fill, times[2].Fill)
	}
	if times[2].Width != "240.0" {
		t.Errorf("the largest time (the device's) spans %s, want the full 240", times[2].Width)
	}
	if insns[2].Width != "0.0" || insns[1].Width != "240.0" {
		t.Errorf("instruction bars = %s, %s: want the largest full and the missing one empty", insns[1].Width, insns[2].Width)
	}
	text := strings.Join(doc.Texts, "|")
	for _, want := range []string{"SKProtect/64", "s390x (emulated)", "pi<zero> (device)", "13.6 µs", "16.8 k", "not a hardware timing"} {
		if !strings.Contains(text, want) {
			t.Errorf("chart text lacks %q: %s", want, text)
		}
	}
}

func TestWriteOutputsReplacesOldCharts(t *testing.T) {
	dir := t.TempDir()
	charts := filepath.Join(dir, "charts")
	if err := os.MkdirAll(charts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(charts, "Removed-1.svg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeOutputs(dir, sampleReport()); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(charts)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "KeyFromPassword.svg,SKProtect-64.svg" {
		t.Errorf("charts = %v, want one per operation and the stale one gone", names)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil || !strings.HasPrefix(string(md), "# E4 core benchmarks per architecture") {
		t.Errorf("results.md = %.60q, %v", md, err)
	}
}

func TestUpdateReadmeRewritesOnlyItsSection(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	before, after := "# Benchmarks\n\nhand-written intro\n\n", "\n\nhand-written end\n"
	content := before + readmeBegin + "\nold table\n" + readmeEnd + after
	if err := os.WriteFile(readme, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateReadme(readme, sampleReport(), filepath.Join(dir, "results")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.HasPrefix(text, before+readmeBegin) || !strings.HasSuffix(text, readmeEnd+after) {
		t.Errorf("text outside the markers changed:\n%s", text)
	}
	if strings.Contains(text, "old table") || !strings.Contains(text, "### Time per operation") {
		t.Errorf("section not replaced:\n%s", text)
	}
	if !strings.Contains(text, "![SKProtect/64](results/charts/SKProtect-64.svg)") || !strings.Contains(text, "![KeyFromPassword](results/charts/KeyFromPassword.svg)") {
		t.Errorf("featured charts missing or not relative to the README:\n%s", text)
	}
	if err := os.WriteFile(readme, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateReadme(readme, sampleReport(), dir); err == nil {
		t.Error("a README without markers was accepted")
	}
}

func TestCallgrindTotal(t *testing.T) {
	out := "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=(1) main\n5 100\nsummary: 7089433\ntotals: 7089433\n"
	n, err := callgrindTotal(strings.NewReader(out))
	if err != nil || n != 7089433 {
		t.Errorf("callgrindTotal = %d, %v; want 7089433", n, err)
	}
	if _, err := callgrindTotal(strings.NewReader("events: Ir\n")); err == nil {
		t.Error("an output without totals was accepted")
	}
}

func TestIterationsFitTheBudget(t *testing.T) {
	for _, c := range []struct {
		ns   float64
		want int
	}{
		{300, 166667}, // 50 ms / 300 ns, rounded up
		{1e9, 1},      // slower than the budget
		{0.001, 1e6},  // capped
		{0, 1},        // no measurement
	} {
		if got := iterations(c.ns, 50e6); got != c.want {
			t.Errorf("iterations(%v ns) = %d, want %d", c.ns, got, c.want)
		}
	}
}

// scriptedCounter answers instruction counts from a table of argument
// lists, standing in for valgrind or qemu to check the arithmetic.
type scriptedCounter struct {
	counts map[string]uint64
	extra  map[string][]uint64 // added to the count of successive calls
	calls  []string
	env    []string
}

func (*scriptedCounter) name() string { return "scripted" }

func (s *scriptedCounter) count(_ context.Context, _ string, argv, env []string) (uint64, error) {
	key := strings.Join(argv[1:], " ")
	s.calls, s.env = append(s.calls, key), env
	n, ok := s.counts[key]
	if !ok {
		return 0, fmt.Errorf("unexpected run %q", key)
	}
	if extra := s.extra[key]; len(extra) > 0 {
		n += extra[0]
		s.extra[key] = extra[1:]
	}
	return n, nil
}

func TestCountBenchmarkDividesTheDifferenceOfTwoRuns(t *testing.T) {
	c := &scriptedCounter{counts: map[string]uint64{
		"-test.run=^$ -test.bench=^BenchmarkSKProtect$/^64$ -test.benchtime=1000x": 20_800_000,
		"-test.run=^$ -test.bench=^BenchmarkSKProtect$/^64$ -test.benchtime=2000x": 37_800_000,
	}}
	insn, err := countBenchmark(context.Background(), c, "", []string{"bench.test"}, nil, "SKProtect/64", 1000, 1)
	if err != nil || insn != 17000 {
		t.Errorf("insn/op = %v, %v; want 17000", insn, err)
	}
	env := strings.Join(c.env, " ")
	if !strings.Contains(env, "GOMAXPROCS=1") || !strings.Contains(env, "asyncpreemptoff=1") {
		t.Errorf("count environment = %q", env)
	}
}

func TestCountBenchmarkKeepsTheLeastOfRepeatedRuns(t *testing.T) {
	low := "-test.run=^$ -test.bench=^BenchmarkSKProtect$/^64$ -test.benchtime=1000x"
	high := "-test.run=^$ -test.bench=^BenchmarkSKProtect$/^64$ -test.benchtime=2000x"
	c := &scriptedCounter{
		counts: map[string]uint64{low: 20_800_000, high: 37_800_000},
		extra:  map[string][]uint64{low: {0, 4_000_000, 9_000_000}, high: {90_000_000, 0, 1_000}},
	}
	insn, err := countBenchmark(context.Background(), c, "", []string{"bench.test"}, nil, "SKProtect/64", 1000, 3)
	if err != nil || insn != 17000 {
		t.Errorf("insn/op = %v, %v; want 17000 from the least of each three runs", insn, err)
	}
	if len(c.calls) != 6 {
		t.Errorf("%d runs, want 3 of each", len(c.calls))
	}
}

func TestCountBenchmarkOfASlowOperationSubtractsAnEmptyRun(t *testing.T) {
	c := &scriptedCounter{counts: map[string]uint64{
		"-test.run=^$ -test.bench=^$ -test.benchtime=1x":                         3_000_000,
		"-test.run=^$ -test.bench=^BenchmarkKeyFromPassword$ -test.benchtime=1x": 663_000_000,
	}}
	insn, err := countBenchmark(context.Background(), c, "", []string{"bench.test"}, nil, "KeyFromPassword", 1, 1)
	if err != nil || insn != 660e6 {
		t.Errorf("insn/op = %v, %v; want 660e6", insn, err)
	}
	if len(c.calls) != 2 {
		t.Errorf("%d runs, want 2: %q", len(c.calls), c.calls)
	}
}

func TestCountBenchmarkRetriesANoisyDifferenceWithMoreIterations(t *testing.T) {
	c := &scriptedCounter{counts: map[string]uint64{
		"-test.run=^$ -test.bench=^BenchmarkHashTopic$ -test.benchtime=10x": 5_000_000,
		"-test.run=^$ -test.bench=^BenchmarkHashTopic$ -test.benchtime=20x": 4_900_000,
		"-test.run=^$ -test.bench=^BenchmarkHashTopic$ -test.benchtime=40x": 5_000_000,
		"-test.run=^$ -test.bench=^BenchmarkHashTopic$ -test.benchtime=80x": 5_240_000,
	}}
	insn, err := countBenchmark(context.Background(), c, "", []string{"bench.test"}, nil, "HashTopic", 10, 1)
	if err != nil || insn != 6000 {
		t.Errorf("insn/op = %v, %v; want 6000 from the 40x/80x counts", insn, err)
	}
}

func TestCountBenchmarkRefusesADifferenceThatStaysNoisy(t *testing.T) {
	counts := map[string]uint64{}
	for n := 10; n <= 10*2<<(2*noisyRetries); n *= 2 {
		counts[fmt.Sprintf("-test.run=^$ -test.bench=^BenchmarkHashTopic$ -test.benchtime=%dx", n)] = 5_000_000
	}
	c := &scriptedCounter{counts: counts}
	if _, err := countBenchmark(context.Background(), c, "", []string{"bench.test"}, nil, "HashTopic", 10, 1); !errors.Is(err, errTooNoisy) {
		t.Errorf("err = %v, want too noisy", err)
	}
	if want := 2 * (noisyRetries + 1); len(c.calls) != want {
		t.Errorf("%d counts, want %d: %q", len(c.calls), want, c.calls)
	}
}

func TestProgressLogsStepsWithElapsedTimes(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, []string{"amd64", "s390x"})
	clock := p.start
	p.now = func() time.Time { return clock }
	p.begin("s390x", "test")
	clock = clock.Add(75 * time.Second)
	p.detail("s390x", "e4/siv")
	p.summary()
	p.end("s390x", errors.New("e4: exit status 1\nlong output"))
	p.finish("s390x", "FAILED in core tests")
	want := []string{
		"[00:00] s390x            test      started",
		"[01:15] running:",
		"    s390x            test       1m15s  e4/siv",
		"[01:15] s390x            test      FAILED: e4: exit status 1 in 1m15s",
		"[01:15] s390x            FAILED in core tests",
	}
	got := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestProgressRedrawsInPlaceOnATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(io.Writer(&out), []string{"amd64"})
	p.live = true
	p.begin("amd64", "bench")
	p.redraw()
	p.redraw()
	text := out.String()
	if !strings.Contains(text, "\x1b[2A") || strings.Count(text, "amd64            bench") != 2 {
		t.Errorf("second redraw does not move up over the first: %q", text)
	}
}

func TestParseFlagsChecksModes(t *testing.T) {
	if _, err := parseFlags([]string{"--merge"}); err == nil {
		t.Error("--merge without files accepted")
	}
	if _, err := parseFlags([]string{"stray.txt"}); err == nil {
		t.Error("a file without --merge accepted")
	}
	c, err := parseFlags([]string{"--merge", "a.txt", "pi=b.txt"})
	if err != nil || !c.merge || len(c.files) != 2 {
		t.Errorf("merge flags = %+v, %v", c, err)
	}
	c, err = parseFlags([]string{"--build-only", "/tmp/x", "-arch", "arm-v7"})
	if err != nil || c.buildOnly != "/tmp/x" || c.arch != "arm-v7" || c.opts.benchtime != "200ms" {
		t.Errorf("build-only flags = %+v, %v", c, err)
	}
}
