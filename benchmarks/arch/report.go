package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Report is everything the runner measured, as written to results.json and
// read back by --merge.
type Report struct {
	Generated string    `json:"generated"`  // RFC 3339 time of the last change
	Command   string    `json:"command"`    // the command line that produced it
	GoVersion string    `json:"go_version"` // the toolchain that built the binaries
	Host      string    `json:"host"`       // CPU of the machine that ran native and emulated targets
	Targets   []*Target `json:"targets"`
}

// Target holds the results of one architecture, emulated, native or from a
// device.
type Target struct {
	Name        string      `json:"name"`
	GOARCH      string      `json:"goarch"`
	Variant     string      `json:"variant,omitempty"` // e.g. GOARM=6
	RunsOn      string      `json:"runs_on"`           // native, qemu-user..., device
	Emulated    bool        `json:"emulated"`          // timings are those of an emulator, not of hardware
	CPU         string      `json:"cpu,omitempty"`
	Tests       *TestResult `json:"tests,omitempty"`
	InsnCounter string      `json:"insn_counter,omitempty"` // what counted instructions, if anything did
	Benchmarks  []Benchmark `json:"benchmarks,omitempty"`
	Footprint   *Footprint  `json:"footprint,omitempty"`
	Errors      []string    `json:"errors,omitempty"` // steps that failed
}

// Benchmark is the summary of one benchmark on one target.
type Benchmark struct {
	Name    string             `json:"name"`
	Runs    int                `json:"runs"`
	Metrics map[string]float64 `json:"metrics"` // unit -> median over the runs: ns/op, B/op, allocs/op, MB/s, custom units
	// InsnPerOp is the number of instructions per operation, counted as
	// the difference between runs of InsnIterations and 2*InsnIterations
	// iterations (or of zero and one, see countInstructions).
	InsnPerOp      float64 `json:"insn_per_op,omitempty"`
	InsnIterations int     `json:"insn_iterations,omitempty"`
}

// TestResult is the outcome of the core's tests on a target.
type TestResult struct {
	Passed     bool     `json:"passed"`
	Packages   []string `json:"packages,omitempty"`
	Skipped    []string `json:"skipped,omitempty"`     // tests left out on this target
	SkipReason string   `json:"skip_reason,omitempty"` // why they were
	Failure    string   `json:"failure,omitempty"`     // the end of the failing output
}

// Footprint is the stripped size of the minimal device program and of an
// empty Go program on a target.
type Footprint struct {
	DeviceBytes int64 `json:"device_bytes"`
	GoFloor     int64 `json:"go_floor_bytes"`
}

// customUnits are the metrics a benchmark reports itself (b.ReportMetric):
// such a benchmark is a measurement, shown in the footprint table, not an
// operation to time or count.
func (b Benchmark) customUnits() []string {
	var units []string
	for unit := range b.Metrics {
		switch unit {
		case "ns/op", "B/op", "allocs/op", "MB/s":
		default:
			units = append(units, unit)
		}
	}
	slices.Sort(units)
	return units
}

// isMeasurement reports whether b is a measurement benchmark.
func (b Benchmark) isMeasurement() bool { return len(b.customUnits()) > 0 }

// benchmark returns the named benchmark of t, if t has it.
func (t *Target) benchmark(name string) (Benchmark, bool) {
	i := slices.IndexFunc(t.Benchmarks, func(b Benchmark) bool { return b.Name == name })
	if i < 0 {
		return Benchmark{}, false
	}
	return t.Benchmarks[i], true
}

// put adds t to the report, replacing a target of the same name in place.
func (r *Report) put(t *Target) {
	if i := slices.IndexFunc(r.Targets, func(old *Target) bool { return old.Name == t.Name }); i >= 0 {
		r.Targets[i] = t
		return
	}
	r.Targets = append(r.Targets, t)
}

// operationGroups order the rows of the tables: the message path first,
// then commands, the one-off operations, and the baselines. go test runs
// benchmarks in source file order, which is no reading order.
var operationGroups = []string{"SKProtect", "SKUnprotect", "PKProtect", "PKUnprotect", "Command", "HashTopic", "KeyFromPassword", "Baseline"}

// operationRank is the position of a benchmark's group; unknown names go
// last.
func operationRank(name string) int {
	for i, prefix := range operationGroups {
		if strings.HasPrefix(name, prefix) {
			return i
		}
	}
	return len(operationGroups)
}

// operations lists the benchmark names of all targets, the operations
// apart from the measurements, by group and then in order of first
// appearance.
func (r *Report) operations() (ops, measurements []string) {
	seen := map[string]bool{}
	for _, t := range r.Targets {
		for _, b := range t.Benchmarks {
			if seen[b.Name] {
				continue
			}
			seen[b.Name] = true
			if b.isMeasurement() {
				measurements = append(measurements, b.Name)
			} else {
				ops = append(ops, b.Name)
			}
		}
	}
	slices.SortStableFunc(ops, func(a, b string) int { return operationRank(a) - operationRank(b) })
	return ops, measurements
}

// readReport loads a results.json; a missing file is an empty report.
func readReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Report{}, nil
	}
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// deviceTarget turns the output of the device script (or of any
// `go test -bench` run of the benchmark binary) into a target labelled
// name.
func deviceTarget(name string, out *benchOutput) (*Target, error) {
	if len(out.Order) == 0 && out.Tests == "" {
		return nil, fmt.Errorf("%s: no benchmark lines and no core tests verdict", name)
	}
	t := &Target{Name: name, GOARCH: out.GOARCH, RunsOn: "device", CPU: out.CPU, Benchmarks: out.benchmarks()}
	if out.Tests != "" {
		t.Tests = &TestResult{Passed: strings.HasPrefix(out.Tests, "passed"), Failure: failureUnlessPassed(out.Tests)}
	}
	t.Errors = out.Failures
	return t, nil
}

func failureUnlessPassed(verdict string) string {
	if strings.HasPrefix(verdict, "passed") {
		return ""
	}
	return verdict
}

// mergeArg splits a --merge argument, "label=path" or a bare path whose
// base name without extension is the label.
func mergeArg(arg string) (label, path string) {
	if label, path, ok := strings.Cut(arg, "="); ok && label != "" && !strings.ContainsRune(label, os.PathSeparator) {
		return label, path
	}
	base := filepath.Base(arg)
	return strings.TrimSuffix(base, filepath.Ext(base)), arg
}

// mergeFiles adds the device outputs named by args to r.
func mergeFiles(r *Report, args []string) error {
	for _, arg := range args {
		label, path := mergeArg(arg)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		out, err := parseBenchOutput(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		t, err := deviceTarget(label, out)
		if err != nil {
			return err
		}
		r.put(t)
	}
	return nil
}
