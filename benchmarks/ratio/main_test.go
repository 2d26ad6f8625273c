package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkSKProtect/64-2   	 4525874	       261.3 ns/op	 244.90 MB/s	       0 B/op	       0 allocs/op
BenchmarkSKProtect/64-2   	 4531742	       250.0 ns/op	 244.98 MB/s	       0 B/op	       0 allocs/op
BenchmarkSKProtect/64-2   	 4531742	       240.0 ns/op	 244.98 MB/s	       0 B/op	       0 allocs/op
BenchmarkBaselineAESGCMSeal/64-2 	 5306046	       100.0 ns/op	 568.29 MB/s	       0 B/op	       0 allocs/op
BenchmarkPKProtect/1024-2 	   43630	     29418 ns/op	  34.81 MB/s	     512 B/op	       1 allocs/op
BenchmarkCMACVsBound16K-2 	   10000	     30000 ns/op	         1.020 cmac/bound	       0 B/op	       0 allocs/op
BenchmarkCMACVsBound16K-2 	   10000	     30000 ns/op	         1.100 cmac/bound	       0 B/op	       0 allocs/op
BenchmarkCMACVsBound16K-2 	   10000	     30000 ns/op	         1.040 cmac/bound	       0 B/op	       0 allocs/op
PASS
`

func TestParseAndReport(t *testing.T) {
	var echo bytes.Buffer
	results, err := parse(strings.NewReader(sample), &echo)
	if err != nil {
		t.Fatal(err)
	}
	if echo.String() != sample {
		t.Error("input not echoed unchanged")
	}
	if n := len(results["SKProtect/64"]); n != 3 {
		t.Fatalf("%d runs of SKProtect/64, want 3", n)
	}
	if m := median(results["SKProtect/64"]); m.nsPerOp != 250 {
		t.Errorf("median %v, want 250", m.nsPerOp)
	}
	if r := results["PKProtect/1024"][0]; r.bytesPerOp != 512 || r.allocsPerOp != 1 {
		t.Errorf("PKProtect/1024 = %+v, want 512 B/op, 1 alloc", r)
	}
	var out bytes.Buffer
	report(&out, results)
	if !strings.Contains(out.String(), "2.50x") {
		t.Errorf("report lacks the 250/100 ratio:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "CMAC 16 KiB / bound (paired)                    1.040  (<= 1.05) met") {
		t.Errorf("report lacks the median paired ratio and its target:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "SK protect 64 B ns/op                         250.000  (<= 180) MISSED") {
		t.Errorf("report does not flag the missed 64 B target:\n%s", out.String())
	}
	if strings.Contains(out.String(), "PKProtect/1024 ") && strings.Contains(out.String(), "BaselineEd25519Sign/1024") {
		t.Errorf("report pairs a benchmark with a missing baseline:\n%s", out.String())
	}
}

// TestFastModeReport: the fast-versus-default paired benchmark, whose name
// has two slashes, reaches the report and its 1.3x target.
func TestFastModeReport(t *testing.T) {
	in := `BenchmarkFastVsDefault/Protect/1024-2 	     811	    100000 ns/op	       947.1 default-ns/op	       725.6 fast-ns/op	         1.305 speedup
BenchmarkFastVsDefault/Unprotect/1024-2 	     811	    100000 ns/op	       947.1 default-ns/op	       800.0 fast-ns/op	         1.184 speedup
`
	results, err := parse(strings.NewReader(in), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, results)
	lines := strings.Split(out.String(), "\n")
	for _, want := range []struct{ label, value, verdict string }{
		{"fast SK protect 1 KiB speedup (paired)", "1.30", "met"},
		{"fast SK unprotect 1 KiB speedup (paired)", "1.18", "MISSED"},
		{"FastVsDefault/Protect/1024", "1.30", "SK protect 1 KiB: default suite / fast suite (paired in one loop)"},
	} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, want.label) && !strings.HasPrefix(l, "Benchmark") })
		if i < 0 || !strings.Contains(lines[i], want.value) || !strings.HasSuffix(lines[i], want.verdict) {
			t.Errorf("report lacks %s at %s, %s:\n%s", want.label, want.value, want.verdict, out.String())
		}
	}
}
