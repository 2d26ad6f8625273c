package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// formatDuration prints nanoseconds with three significant digits in the
// unit that keeps the number between 1 and 1000: 292 ns, 1.91 µs, 118 ms.
func formatDuration(ns float64) string {
	units := []struct {
		scale float64
		name  string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}, {1, "ns"}}
	for _, u := range units {
		if ns >= u.scale || u.scale == 1 {
			return significant(ns/u.scale) + " " + u.name
		}
	}
	return ""
}

// formatCount prints a count with three significant digits and an SI
// suffix: 912, 17.0 k, 1.33 M, 2.00 G.
func formatCount(n float64) string {
	switch {
	case n >= 1e9:
		return significant(n/1e9) + " G"
	case n >= 1e6:
		return significant(n/1e6) + " M"
	case n >= 1e4:
		return significant(n/1e3) + " k"
	default:
		return fmt.Sprintf("%.0f", n)
	}
}

// formatBytes prints a size in KiB or MiB with three significant digits.
func formatBytes(n float64) string {
	switch {
	case n >= 1<<20:
		return significant(n/(1<<20)) + " MiB"
	case n >= 1<<10:
		return significant(n/(1<<10)) + " KiB"
	default:
		return fmt.Sprintf("%.0f B", n)
	}
}

// significant prints v with three significant digits, without exponent.
func significant(v float64) string {
	switch {
	case v >= 100 || v == 0:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// columnTitle is a target's column header: emulated figures are marked so
// that nobody reads them as hardware timings.
func (t *Target) columnTitle() string {
	switch {
	case t.Emulated:
		return t.Name + " (emulated)"
	case t.RunsOn == "device":
		return t.Name + " (device)"
	}
	return t.Name
}

// writeMarkdown writes every table of the report.
func writeMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	ops, measurements := r.operations()
	fmt.Fprintf(&b, "Generated %s by `%s` with %s on %s.\n\n", r.Generated, r.Command, r.GoVersion, r.Host)
	writeTargets(&b, r)
	b.WriteString("\n### Time per operation\n\n")
	b.WriteString("Columns marked *emulated* are timings of qemu-user on the host above: they rank the\n")
	b.WriteString("operations on one architecture, not one architecture against another.\n\n")
	writeMatrix(&b, r, ops, timeCell)
	b.WriteString("\n### Instructions per operation\n\n")
	b.WriteString("Guest instructions executed per operation, runtime and garbage collection included,\n")
	b.WriteString("counted with valgrind's callgrind (native targets) or a QEMU plugin (emulated ones).\n")
	b.WriteString("Machine-independent within an architecture; across architectures the instruction\n")
	b.WriteString("sets differ: amd64, arm64, ppc64le and s390x have AES instructions, the others not,\n")
	b.WriteString("and s390x hashes a whole buffer in one instruction (its Ed25519 rows do not grow\n")
	b.WriteString("with the message).\n\n")
	writeMatrix(&b, r, ops, insnCell)
	b.WriteString("\n### Memory per operation (B/op, allocs/op)\n\n")
	writeMatrix(&b, r, ops, allocCell)
	writeFastMode(&b, r)
	b.WriteString("\n### Footprint\n\n")
	writeFootprint(&b, r, measurements)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTargets(b *strings.Builder, r *Report) {
	b.WriteString("| architecture | variant | runs on | core tests | instructions counted by |\n|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", t.Name, dash(t.Variant), t.RunsOn, t.testsCell(), dash(t.InsnCounter))
	}
	var notes []string
	for _, t := range r.Targets {
		if t.Tests == nil || len(t.Tests.Skipped) == 0 {
			continue
		}
		note := fmt.Sprintf("Skipped: %s (%s).", strings.Join(t.Tests.Skipped, ", "), t.Tests.SkipReason)
		if !slices.Contains(notes, note) {
			notes = append(notes, note)
		}
	}
	for _, note := range notes {
		b.WriteString("\n" + note + "\n")
	}
	for _, t := range r.Targets {
		for _, e := range t.Errors {
			fmt.Fprintf(b, "\n**%s**: %s\n", t.Name, escapeCell(e))
		}
	}
}

func (t *Target) testsCell() string {
	switch {
	case t.Tests == nil:
		return "not run"
	case !t.Tests.Passed:
		return "**FAILED**"
	case len(t.Tests.Skipped) > 0:
		return fmt.Sprintf("passed, %d skipped", len(t.Tests.Skipped))
	}
	return "passed"
}

// writeMatrix writes one table: a row per operation, a column per target.
func writeMatrix(b *strings.Builder, r *Report, ops []string, cell func(Benchmark) string) {
	b.WriteString("| operation |")
	for _, t := range r.Targets {
		b.WriteString(" " + t.columnTitle() + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(r.Targets)) + "\n")
	for _, op := range ops {
		b.WriteString("| " + op + " |")
		for _, t := range r.Targets {
			text := "–"
			if bench, ok := t.benchmark(op); ok {
				text = cell(bench)
			}
			b.WriteString(" " + text + " |")
		}
		b.WriteString("\n")
	}
}

func timeCell(b Benchmark) string { return formatDuration(b.Metrics["ns/op"]) }

func insnCell(b Benchmark) string {
	if b.InsnPerOp <= 0 {
		return "–"
	}
	return formatCount(b.InsnPerOp)
}

func allocCell(b Benchmark) string {
	bytes, okB := b.Metrics["B/op"]
	allocs, okA := b.Metrics["allocs/op"]
	if !okB || !okA {
		return "–"
	}
	return fmt.Sprintf("%.0f B, %.0f", bytes, allocs)
}

// writeFootprint writes a row per target: the program sizes and the value
// of every measurement benchmark.
func writeFootprint(b *strings.Builder, r *Report, measurements []string) {
	b.WriteString("Sizes of `benchmarks/minimal/device` (an SK client that installs a topic key,\n")
	b.WriteString("protects and unprotects) and of `benchmarks/minimal/nop` (an empty Go program),\n")
	b.WriteString("both built with `-trimpath -ldflags='-s -w'`; heap bytes held per topic, measured\n")
	b.WriteString("with runtime.MemStats over 1000 topics (`benchmarks/footprint_test.go`).\n\n")
	b.WriteString("| architecture | device program | empty Go program | E4's share |")
	var units []string
	for _, m := range measurements {
		for _, unit := range measurementUnits(r, m) {
			units = append(units, m+"\x00"+unit)
			fmt.Fprintf(b, " %s (%s) |", m, unit)
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", 3+len(units)) + "\n")
	for _, t := range r.Targets {
		b.WriteString("| " + t.Name + " |")
		if f := t.Footprint; f != nil {
			fmt.Fprintf(b, " %s | %s | %s |", formatBytes(float64(f.DeviceBytes)), formatBytes(float64(f.GoFloor)), formatBytes(float64(f.DeviceBytes-f.GoFloor)))
		} else {
			b.WriteString(" – | – | – |")
		}
		for _, key := range units {
			name, unit, _ := strings.Cut(key, "\x00")
			text := "–"
			if bench, ok := t.benchmark(name); ok {
				if v, ok := bench.Metrics[unit]; ok {
					text = significant(v)
				}
			}
			b.WriteString(" " + text + " |")
		}
		b.WriteString("\n")
	}
}

// measurementUnits lists the custom units a measurement benchmark reports
// on any target.
func measurementUnits(r *Report, name string) []string {
	var units []string
	for _, t := range r.Targets {
		if bench, ok := t.benchmark(name); ok {
			for _, u := range bench.customUnits() {
				if !slices.Contains(units, u) {
					units = append(units, u)
				}
			}
		}
	}
	return units
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// escapeCell keeps text from breaking a Markdown table row.
func escapeCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

// isFinite guards divisions by zero in derived figures.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
