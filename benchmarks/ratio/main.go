// Command ratio reads `go test -bench` output of package benchmarks on stdin,
// echoes it, and prints each E4 figure next to the baseline measured in the
// same run, as a ratio. With -count > 1 it uses the median of the runs.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// comparisons pairs each E4 benchmark with its baseline.
var comparisons = []struct{ e4, baseline string }{
	{"SKProtect/64", "BaselineAESGCMSeal/64"},
	{"SKProtect/1024", "BaselineAESGCMSeal/1024"},
	{"SKProtect/16384", "BaselineAESGCMSeal/16384"},
	{"SKProtect/16384", "BaselineSerialChain16K"},
	{"SKUnprotect/16384", "BaselineSerialChain16K"},
	{"PKProtect/64", "BaselineEd25519Sign/64"},
	{"PKProtect/1024", "BaselineEd25519Sign/1024"},
	{"PKProtect/16384", "BaselineEd25519Sign/16384"},
	{"PKUnprotect/64", "BaselineEd25519Verify/64"},
	{"PKUnprotect/1024", "BaselineEd25519Verify/1024"},
	{"PKUnprotect/16384", "BaselineEd25519Verify/16384"},
}

// result is one benchmark line.
type result struct{ nsPerOp, bytesPerOp, allocsPerOp float64 }

var line = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$`)

func main() {
	results, err := parse(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratio:", err)
		os.Exit(1)
	}
	report(os.Stdout, results)
}

// parse echoes the input and collects every run of every benchmark.
func parse(r io.Reader, echo io.Writer) (map[string][]result, error) {
	results := map[string][]result{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		text := sc.Text()
		fmt.Fprintln(echo, text)
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		res := result{nsPerOp: ns, bytesPerOp: field(m[3], "B/op"), allocsPerOp: field(m[3], "allocs/op")}
		results[m[1]] = append(results[m[1]], res)
	}
	return results, sc.Err()
}

// field returns the number before unit in the tail of a benchmark line.
func field(tail, unit string) float64 {
	parts := strings.Fields(tail)
	for i := 1; i < len(parts); i++ {
		if parts[i] == unit {
			v, _ := strconv.ParseFloat(parts[i-1], 64)
			return v
		}
	}
	return 0
}

func median(runs []result) result {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b result) int {
		if a.nsPerOp < b.nsPerOp {
			return -1
		}
		if a.nsPerOp > b.nsPerOp {
			return 1
		}
		return 0
	})
	return sorted[len(sorted)/2]
}

func report(w io.Writer, results map[string][]result) {
	fmt.Fprintf(w, "\n%-20s %12s %8s %8s   %-28s %12s %8s\n", "E4", "ns/op", "B/op", "allocs", "baseline (same run)", "ns/op", "ratio")
	for _, c := range comparisons {
		e, okE := results[c.e4]
		b, okB := results[c.baseline]
		if !okE || !okB {
			continue
		}
		me, mb := median(e), median(b)
		fmt.Fprintf(w, "%-20s %12.1f %8.0f %8.0f   %-28s %12.1f %7.2fx\n",
			c.e4, me.nsPerOp, me.bytesPerOp, me.allocsPerOp, c.baseline, mb.nsPerOp, me.nsPerOp/mb.nsPerOp)
	}
	for _, name := range []string{"SKProtect/64", "SKUnprotect/64"} {
		if runs, ok := results[name]; ok {
			m := median(runs)
			fmt.Fprintf(w, "%-20s %12.1f %8.0f %8.0f   (absolute)\n", name, m.nsPerOp, m.bytesPerOp, m.allocsPerOp)
		}
	}
}
