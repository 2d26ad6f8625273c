package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// insnCounter runs a program and returns how many instructions it executed,
// over all its threads.
type insnCounter interface {
	// name says what counts, for the tables.
	name() string
	// count runs argv (a benchmark binary and its arguments) in dir.
	count(ctx context.Context, dir string, argv, env []string) (uint64, error)
}

// callgrind counts with valgrind's callgrind, for binaries this machine
// runs natively (valgrind has amd64 and x86 back ends).
type callgrind struct{ scratch string }

func (callgrind) name() string { return "callgrind" }

func (c callgrind) count(ctx context.Context, dir string, argv, env []string) (uint64, error) {
	outFile, err := scratchFile(c.scratch, "callgrind.out")
	if err != nil {
		return 0, err
	}
	defer os.Remove(outFile)
	args := append([]string{"valgrind", "--tool=callgrind", "--callgrind-out-file=" + outFile, "-q"}, argv...)
	if err := runQuiet(ctx, dir, env, args); err != nil {
		return 0, err
	}
	f, err := os.Open(outFile)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return callgrindTotal(f)
}

// callgrindTotal reads the total of the first event (Ir, instructions
// executed) from a callgrind output file: its "summary:" or "totals:" line.
func callgrindTotal(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		for _, prefix := range []string{"summary:", "totals:"} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				fields := strings.Fields(rest)
				if len(fields) == 0 {
					return 0, fmt.Errorf("callgrind: empty %q line", prefix)
				}
				return strconv.ParseUint(fields[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("callgrind: no summary or totals line in the output file")
}

// qemuPluginSource is the instruction-counting QEMU plugin, compiled on
// first use: Debian's qemu-user loads plugins but ships none.
//
//go:embed qemuplugin/insncount.c
var qemuPluginSource []byte

// qemuPlugin counts with insncount.c loaded into the target's qemu-user.
type qemuPlugin struct {
	library  string   // the compiled plugin
	emulator []string // qemu-<arch> [-cpu model]
	scratch  string
}

func (qemuPlugin) name() string { return "QEMU plugin" }

func (q qemuPlugin) count(ctx context.Context, dir string, argv, env []string) (uint64, error) {
	outFile, err := scratchFile(q.scratch, "insn")
	if err != nil {
		return 0, err
	}
	defer os.Remove(outFile)
	args := append(append([]string{}, q.emulator...), "-plugin", q.library+",out="+outFile)
	if err := runQuiet(ctx, dir, env, append(args, argv...)); err != nil {
		return 0, err
	}
	data, err := os.ReadFile(outFile)
	if err != nil {
		return 0, fmt.Errorf("QEMU plugin wrote no count: %w", err)
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// buildQEMUPlugin compiles the plugin into dir with the C compiler.
func buildQEMUPlugin(ctx context.Context, dir string) (string, error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", errors.New("no C compiler (cc) to build the QEMU instruction-count plugin: run scripts/install-bench-deps.sh")
	}
	src := filepath.Join(dir, "insncount.c")
	lib := filepath.Join(dir, "libinsncount.so")
	if err := os.WriteFile(src, qemuPluginSource, 0o644); err != nil {
		return "", err
	}
	if err := runQuiet(ctx, dir, nil, []string{cc, "-shared", "-fPIC", "-O2", "-o", lib, src}); err != nil {
		return "", fmt.Errorf("building the QEMU plugin: %w", err)
	}
	return lib, nil
}

// scratchFile returns a fresh path in dir for a counter's output.
func scratchFile(dir, prefix string) (string, error) {
	f, err := os.CreateTemp(dir, prefix+".*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	return name, f.Close()
}

// iterations chooses how many iterations a count runs: enough that the
// operations take about budget at the measured speed, which puts the
// runtime's background work (a few hundred thousand instructions between
// two runs) below 1% of the difference.
func iterations(nsPerOp float64, budget time.Duration) int {
	if nsPerOp <= 0 || !isFinite(nsPerOp) {
		return 1
	}
	n := math.Ceil(float64(budget) / nsPerOp)
	return int(min(max(n, 1), 1e6))
}

// countBenchmark returns the instructions per operation of one benchmark.
// It runs the benchmark for n and 2n iterations and divides the difference
// by n, so that process start-up and the benchmark's setup cancel out. An
// operation so slow that n is 1 is counted as one iteration minus a run
// that starts no benchmark, which leaves the setup in, but it is small next
// to such an operation.
//
// Each of the two runs is repeated and the smallest count kept: the
// runtime's background work (the scavenger returning memory, sysmon) is
// paced by wall time, so a run slowed down by a busy machine executes more
// of it, never less. For the same reason the counts run with GOMAXPROCS=1,
// since idle Ps spin looking for work, and without asynchronous
// preemption, whose signals also make callgrind 3.19 abort.
func countBenchmark(ctx context.Context, c insnCounter, dir string, bin []string, env []string, name string, n, repeats int) (float64, error) {
	env = append(env, "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1")
	run := func(filter string, iters int) (uint64, error) {
		argv := append(append([]string{}, bin...), "-test.run=^$", "-test.bench="+filter, fmt.Sprintf("-test.benchtime=%dx", iters))
		least := uint64(math.MaxUint64)
		for range max(repeats, 1) {
			count, err := c.count(ctx, dir, argv, env)
			if err != nil {
				return 0, err
			}
			least = min(least, count)
		}
		return least, nil
	}
	filter := benchFilter(name)
	var perOp float64
	var err error
	for range noisyRetries + 1 {
		perOp, err = countDifference(run, filter, name, n)
		if !errors.Is(err, errTooNoisy) {
			return perOp, err
		}
		// On a busy machine the timing that chose n was slow, so n is
		// small and the runtime's background work can outweigh it: count
		// again with more iterations.
		n *= 4
	}
	return 0, err
}

// errTooNoisy: the longer of two counts was not the larger.
var errTooNoisy = errors.New("too noisy to count")

// noisyRetries is how many times countBenchmark counts again, with four
// times the iterations, when the difference drowned in background work.
const noisyRetries = 3

// countDifference runs filter for n and 2n iterations (or, for n = 1, one
// iteration against a run of no benchmark) and returns the instructions of
// one operation, or an error when the longer run did not count more.
func countDifference(run func(filter string, iters int) (uint64, error), filter, name string, n int) (float64, error) {
	lowFilter, lowIters, highIters := filter, n, 2*n
	if n == 1 {
		lowFilter, lowIters, highIters = "^$", 1, 1
	}
	low, err := run(lowFilter, lowIters)
	if err != nil {
		return 0, err
	}
	high, err := run(filter, highIters)
	if err != nil {
		return 0, err
	}
	if high <= low {
		return 0, fmt.Errorf("%s: %d instructions for %d iterations, %d for fewer: %w", name, high, highIters, low, errTooNoisy)
	}
	return float64(high-low) / float64(n), nil
}
