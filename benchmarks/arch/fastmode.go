package main

import (
	"fmt"
	"strings"
)

// fastModeRows pairs each default-suite operation with its fast-mode twin
// (e4.Fast: 10-round AES-256 and SHA3-256) and with the benchmark that
// alternates both in one loop.
var fastModeRows = []struct{ label, def, fast, paired string }{
	{"SK protect 64 B", "SKProtect/64", "FastSKProtect/64", "FastVsDefault/Protect/64"},
	{"SK protect 1 KiB", "SKProtect/1024", "FastSKProtect/1024", "FastVsDefault/Protect/1024"},
	{"SK unprotect 64 B", "SKUnprotect/64", "FastSKUnprotect/64", "FastVsDefault/Unprotect/64"},
	{"SK unprotect 1 KiB", "SKUnprotect/1024", "FastSKUnprotect/1024", "FastVsDefault/Unprotect/1024"},
	{"topic hash", "FastHashTopic/v1", "FastHashTopic/fast", ""},
}

// writeFastMode writes the fast-mode table: per target, how many times
// faster the fast suite runs each operation than the default suite, from
// the same run. Nothing is written when no target ran the fast benchmarks.
func writeFastMode(b *strings.Builder, r *Report) {
	var rows []string
	for _, row := range fastModeRows {
		cells, any := make([]string, len(r.Targets)), false
		for i, t := range r.Targets {
			cells[i] = fastModeCell(t, row.def, row.fast, row.paired)
			any = any || cells[i] != "–"
		}
		if any {
			rows = append(rows, "| "+row.label+" | "+strings.Join(cells, " | ")+" |\n")
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n### Fast mode\n\n")
	b.WriteString("Default suite time / fast suite time (`e4.Fast`: AES-256 with 10 rounds in SIV,\n")
	b.WriteString("SHA3-256 on 10 Keccak rounds), from the same run: the median of blocks of both suites\n")
	b.WriteString("alternated in one loop where that benchmark ran (*paired*), else the ratio of the two\n")
	b.WriteString("benchmarks; then the same ratio of instructions per operation where they were counted.\n\n")
	b.WriteString("| operation |")
	for _, t := range r.Targets {
		b.WriteString(" " + t.columnTitle() + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(r.Targets)) + "\n")
	for _, row := range rows {
		b.WriteString(row)
	}
}

// fastModeCell is one target's speedup of one operation, or "–".
func fastModeCell(t *Target, def, fast, paired string) string {
	var parts []string
	if p, ok := t.benchmark(paired); ok && p.Metrics["speedup"] > 0 {
		parts = append(parts, fmt.Sprintf("%.2f× paired", p.Metrics["speedup"]))
	}
	d, okD := t.benchmark(def)
	f, okF := t.benchmark(fast)
	if !okD || !okF {
		return dash(strings.Join(parts, ", "))
	}
	if len(parts) == 0 && f.Metrics["ns/op"] > 0 {
		parts = append(parts, fmt.Sprintf("%.2f×", d.Metrics["ns/op"]/f.Metrics["ns/op"]))
	}
	if d.InsnPerOp > 0 && f.InsnPerOp > 0 {
		parts = append(parts, fmt.Sprintf("%.2f× insn", d.InsnPerOp/f.InsnPerOp))
	}
	return dash(strings.Join(parts, ", "))
}
