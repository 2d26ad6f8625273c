package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// benchOutput is what one `go test -bench` output holds: its header and
// every run of every benchmark, in order of first appearance.
type benchOutput struct {
	GOOS, GOARCH, CPU string
	Order             []string                        // benchmark names
	Runs              map[string][]map[string]float64 // name -> one map of unit -> value per run
	Tests             string                          // the "# core tests:" verdict of a device script
	Failures          []string                        // "--- FAIL" lines
}

// testsLine is printed by the device script (see buildonly.go) so that the
// merged results say whether the core tests passed on the device.
const testsLine = "# core tests: "

var (
	benchLine  = regexp.MustCompile(`^Benchmark(\S+)\s+(\d+)\s+(.+)$`)
	procSuffix = regexp.MustCompile(`-\d+$`)
)

// parseBenchOutput reads standard `go test -bench` output. Lines it does
// not know are skipped, so test output, PASS lines and logs may surround
// the benchmark lines.
func parseBenchOutput(r io.Reader) (*benchOutput, error) {
	out := &benchOutput{Runs: map[string][]map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if err := out.addLine(text); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func (out *benchOutput) addLine(text string) error {
	if key, value, ok := strings.Cut(text, ": "); ok && !strings.Contains(key, " ") {
		switch key {
		case "goos":
			out.GOOS = value
		case "goarch":
			out.GOARCH = value
		case "cpu":
			out.CPU = value
		}
	}
	if v, ok := strings.CutPrefix(text, testsLine); ok {
		out.Tests = strings.TrimSpace(v)
	}
	if strings.HasPrefix(strings.TrimSpace(text), "--- FAIL") {
		out.Failures = append(out.Failures, strings.TrimSpace(text))
	}
	m := benchLine.FindStringSubmatch(text)
	if m == nil {
		return nil
	}
	metrics, err := parseMetrics(m[3])
	if err != nil {
		return fmt.Errorf("benchmark %s: %w", m[1], err)
	}
	name := procSuffix.ReplaceAllString(m[1], "")
	if _, seen := out.Runs[name]; !seen {
		out.Order = append(out.Order, name)
	}
	out.Runs[name] = append(out.Runs[name], metrics)
	return nil
}

// parseMetrics reads the "value unit" pairs after the iteration count.
func parseMetrics(s string) (map[string]float64, error) {
	fields := strings.Fields(s)
	if len(fields)%2 != 0 {
		return nil, fmt.Errorf("odd number of fields in %q", s)
	}
	metrics := make(map[string]float64, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return nil, fmt.Errorf("value %q: %w", fields[i], err)
		}
		metrics[fields[i+1]] = v
	}
	if _, ok := metrics["ns/op"]; !ok {
		return nil, fmt.Errorf("no ns/op in %q", s)
	}
	return metrics, nil
}

// benchmarks summarises the runs: for each benchmark, the median of each
// unit over its runs.
func (out *benchOutput) benchmarks() []Benchmark {
	var list []Benchmark
	for _, name := range out.Order {
		runs := out.Runs[name]
		b := Benchmark{Name: name, Runs: len(runs), Metrics: map[string]float64{}}
		for unit := range runs[0] {
			var values []float64
			for _, run := range runs {
				if v, ok := run[unit]; ok {
					values = append(values, v)
				}
			}
			b.Metrics[unit] = median(values)
		}
		list = append(list, b)
	}
	return list
}

// median of a non-empty list; the mean of the middle two for an even count.
func median(values []float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// benchFilter returns the -test.bench pattern that selects exactly one
// benchmark, e.g. "SKProtect/64" -> ^BenchmarkSKProtect$/^64$.
func benchFilter(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		if i == 0 {
			p = "Benchmark" + p
		}
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
