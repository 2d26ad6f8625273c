// Command arch runs the E4 core's tests and benchmarks on every Linux
// architecture Go supports for devices, natively where this machine can and
// under qemu-user otherwise, and writes the results as a Markdown table, a
// JSON file and one SVG chart per operation.
//
//	go run ./benchmarks/arch                       # all architectures
//	go run ./benchmarks/arch -arch amd64,s390x     # some
//	go run ./benchmarks/arch --build-only DIR      # binaries to run on devices
//	go run ./benchmarks/arch --merge dev.txt ...   # add device outputs
//
// See benchmarks/README.md. scripts/install-bench-deps.sh installs what it
// needs (qemu-user, valgrind, a C compiler for the QEMU plugin).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "arch:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	opts      options
	arch      string
	out       string
	readme    string
	buildOnly string
	merge     bool
	keep      bool
	files     []string
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("arch", flag.ContinueOnError)
	fs.StringVar(&c.arch, "arch", "all", "comma-separated architectures: "+strings.Join(targetNames(), ","))
	fs.StringVar(&c.opts.bench, "bench", ".", "benchmarks to run (go test -bench pattern)")
	fs.StringVar(&c.opts.benchtime, "benchtime", "200ms", "time per benchmark on emulated architectures")
	fs.IntVar(&c.opts.count, "count", 1, "runs per benchmark on emulated architectures")
	fs.StringVar(&c.opts.nativeBenchtime, "native-benchtime", "500ms", "time per benchmark on native architectures")
	fs.IntVar(&c.opts.nativeCount, "native-count", 3, "runs per benchmark on native architectures (the median is reported)")
	fs.BoolVar(&c.opts.insn, "insn", true, "count instructions per operation (callgrind natively, a QEMU plugin under emulation)")
	fs.DurationVar(&c.opts.insnBudget, "insn-budget", 50*time.Millisecond, "emulated time the iterations of one instruction count take")
	fs.DurationVar(&c.opts.nativeBudget, "native-insn-budget", 5*time.Millisecond, "native time the iterations of one callgrind count take (callgrind runs them ~100 times slower)")
	fs.IntVar(&c.opts.insnRepeats, "insn-repeats", 2, "runs of each instruction count, the least kept (background work only adds)")
	fs.BoolVar(&c.opts.tests, "tests", true, "run the core tests (vectors included) before the benchmarks of each architecture")
	fs.IntVar(&c.opts.jobs, "jobs", runtime.NumCPU(), "architectures in parallel (native timings always run alone)")
	fs.StringVar(&c.out, "out", "benchmarks/results", "directory of results.md, results.json, charts/ and raw/ (relative to the module root)")
	fs.StringVar(&c.readme, "readme", "benchmarks/README.md", "README whose results section is rewritten (between its markers); empty for none")
	fs.StringVar(&c.buildOnly, "build-only", "", "only build the per-architecture binaries and a README into this directory, for devices")
	fs.BoolVar(&c.merge, "merge", false, "merge the device outputs named as arguments (label=file or file) into the results")
	fs.BoolVar(&c.keep, "keep", false, "keep the architectures of the existing results.json that this run does not measure")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.files = fs.Args()
	switch {
	case c.merge && len(c.files) == 0:
		return nil, errors.New("--merge needs at least one file")
	case !c.merge && len(c.files) > 0:
		return nil, fmt.Errorf("unexpected arguments %q (files are for --merge)", c.files)
	case c.merge && c.buildOnly != "":
		return nil, errors.New("--merge and --build-only exclude each other")
	}
	return c, nil
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	out := inRoot(root, c.out)
	switch {
	case c.merge:
		return mergeMode(root, out, c)
	case c.buildOnly != "":
		return buildOnlyMode(ctx, root, c)
	}
	return runMode(ctx, root, out, c)
}

// inRoot resolves a relative path against the module root.
func inRoot(root, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, path)
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := runOutput(ctx, ".", nil, []string{"go", "env", "GOMOD"})
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run from inside the e4kit module")
	}
	return filepath.Dir(gomod), nil
}

func runMode(ctx context.Context, root, out string, c *config) error {
	targets, err := selectTargets(c.arch)
	if err != nil {
		return err
	}
	report := &Report{}
	if c.keep {
		if report, err = readReport(filepath.Join(out, "results.json")); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "e4bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r := &runner{root: root, work: work, rawDir: filepath.Join(out, "raw"), opts: c.opts}
	if err := os.MkdirAll(r.rawDir, 0o755); err != nil {
		return err
	}
	r.progress = newProgress(os.Stderr, names(targets))
	go r.progress.run()
	results := r.runAll(ctx, targets)
	r.progress.close()
	for _, t := range results {
		report.put(t)
	}
	command := commandLine()
	if c.keep && report.Command != "" {
		// The targets kept come from the earlier run.
		command = report.Command + "; then " + command
	}
	if err := writeResults(ctx, root, out, c, report, command); err != nil {
		return err
	}
	return failures(results)
}

// failures is an error naming the targets whose core tests failed or
// whose steps broke.
func failures(results []*Target) error {
	var failed []string
	for _, t := range results {
		if len(t.Errors) > 0 || (t.Tests != nil && !t.Tests.Passed) {
			failed = append(failed, t.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failures on %s (see the table)", strings.Join(failed, ", "))
	}
	return nil
}

func names(targets []target) []string {
	var list []string
	for _, t := range targets {
		list = append(list, t.Name)
	}
	return list
}

func mergeMode(root, out string, c *config) error {
	report, err := readReport(filepath.Join(out, "results.json"))
	if err != nil {
		return err
	}
	if err := mergeFiles(report, c.files); err != nil {
		return err
	}
	command := commandLine()
	if report.Command != "" {
		// The other columns still come from the earlier run.
		command = report.Command + "; then " + command
	}
	return writeResults(context.Background(), root, out, c, report, command)
}

func buildOnlyMode(ctx context.Context, root string, c *config) error {
	targets, err := selectTargets(c.arch)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(c.buildOnly)
	if err != nil {
		return err
	}
	p := newProgress(os.Stderr, names(targets))
	go p.run()
	err = buildBundle(ctx, root, dir, targets, p)
	p.close()
	if err == nil {
		fmt.Fprintf(os.Stderr, "wrote %s (see its README.md)\n", dir)
	}
	return err
}

// commandLine is how this run was started, for the report.
func commandLine() string {
	words := []string{"go", "run", "./benchmarks/arch"}
	for _, arg := range os.Args[1:] {
		if arg == "" || strings.ContainsAny(arg, " \t'\"|*?$") {
			arg = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
		}
		words = append(words, arg)
	}
	return strings.Join(words, " ")
}

// writeResults stamps the report with the command that produced it and
// writes results.json, results.md, the charts and the README section.
func writeResults(ctx context.Context, root, out string, c *config, report *Report, command string) error {
	report.Generated = time.Now().UTC().Format(time.RFC3339)
	report.Command = command
	report.GoVersion = runtime.Version()
	report.Host = hostDescription()
	if goVersion, err := runOutput(ctx, root, nil, []string{"go", "env", "GOVERSION"}); err == nil {
		report.GoVersion = strings.TrimSpace(string(goVersion))
	}
	if err := writeOutputs(out, report); err != nil {
		return err
	}
	if c.readme != "" {
		if err := updateReadme(inRoot(root, c.readme), report, out); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	return nil
}

// hostDescription names this machine's CPU, as the emulated timings depend
// on it.
func hostDescription() string {
	model := runtime.GOARCH
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores (linux/%s)", model, runtime.NumCPU(), runtime.GOARCH)
}
