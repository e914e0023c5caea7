package fairshare

import (
	"math"
	"runtime/metrics"
	"testing"
	"time"
)

// TestCPUWait: the wait is read at most once an interval, from what the
// runtime counted since the last read; until a second read there is none.
func TestCPUWait(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	buckets := []float64{math.Inf(-1), 0, 0.001, 0.01, math.Inf(1)}
	reads := [][]uint64{
		{0, 1000, 0, 0},
		{0, 1000, 0, 500}, // 500 schedulings waited 10 ms or more
		{0, 2000, 0, 500}, // 1,000 did not
	}
	n := 0
	w := &CPUWait{every: 250 * time.Millisecond, read: func() *metrics.Float64Histogram {
		h := &metrics.Float64Histogram{Counts: reads[n], Buckets: buckets}
		n++
		return h
	}}
	for _, c := range []struct {
		at    time.Duration
		want  time.Duration
		reads int
	}{
		{0, 0, 1},                      // the first read: nothing to compare with
		{100 * time.Millisecond, 0, 1}, // within the interval: not read again
		{250 * time.Millisecond, 10 * time.Millisecond, 2}, // all 500 waited
		{400 * time.Millisecond, 10 * time.Millisecond, 2},
		{500 * time.Millisecond, 0, 3}, // none waited
	} {
		if got := w.P99(t0.Add(c.at)); got != c.want || n != c.reads {
			t.Errorf("at %s: %s after %d reads, want %s after %d", c.at, got, n, c.want, c.reads)
		}
	}
	// The runtime has the histogram it reads.
	if NewCPUWait(time.Second).read() == nil {
		t.Errorf("runtime/metrics has no %s", schedLatencies)
	}
}
