package main

import (
	"strings"
	"testing"
)

// TestFastModeTable: the fast-mode section shows the paired speedup where
// it ran, the ratio of the two benchmarks elsewhere, the instruction ratio
// where instructions were counted, and a dash where a target lacks the
// fast benchmarks; a report without them has no such section.
func TestFastModeTable(t *testing.T) {
	if md := markdown(t, sampleReport()); strings.Contains(md, "### Fast mode") {
		t.Fatalf("a report without fast benchmarks has a fast-mode section:\n%s", md)
	}
	r := sampleReport()
	amd64, s390x := r.Targets[0], r.Targets[1]
	amd64.Benchmarks = append(amd64.Benchmarks,
		Benchmark{Name: "SKProtect/1024", Runs: 3, Metrics: map[string]float64{"ns/op": 950}, InsnPerOp: 9000},
		Benchmark{Name: "FastSKProtect/1024", Runs: 3, Metrics: map[string]float64{"ns/op": 730}, InsnPerOp: 6000},
		Benchmark{Name: "FastVsDefault/Protect/1024", Runs: 3, Metrics: map[string]float64{"ns/op": 100000, "speedup": 1.306}})
	s390x.Benchmarks = append(s390x.Benchmarks,
		Benchmark{Name: "SKProtect/1024", Runs: 1, Metrics: map[string]float64{"ns/op": 50000}},
		Benchmark{Name: "FastSKProtect/1024", Runs: 1, Metrics: map[string]float64{"ns/op": 40000}})
	md := markdown(t, r)
	if row := tableRow(t, md, "### Fast mode", "SK protect 1 KiB"); row != "| SK protect 1 KiB | 1.31× paired, 1.50× insn | 1.25× | – |" {
		t.Errorf("fast-mode row: %q\n%s", row, md)
	}
	if strings.Contains(md, "| SK protect 64 B |") {
		t.Errorf("a row without any fast benchmark is shown:\n%s", md)
	}
}
