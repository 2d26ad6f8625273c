package transporttest

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{0.9}, 0.9},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{0.5, 10, 0.8, 0.8, 0.9}, 0.8}, // one outlier round does not move it
	} {
		if got := median(append([]float64(nil), c.in...)); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * time.Microsecond
	}
	if got := percentile(sorted, 50); got != 51*time.Microsecond {
		t.Errorf("p50 of 1..100 µs = %v, want 51µs", got)
	}
	if got := percentile(sorted, 99); got != 100*time.Microsecond {
		t.Errorf("p99 of 1..100 µs = %v, want 100µs", got)
	}
	if got := percentile(sorted[:1], 99); got != time.Microsecond {
		t.Errorf("p99 of one sample = %v, want it", got)
	}
}
