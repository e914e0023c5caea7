package fairshare

import (
	"math"
	"runtime/metrics"
	"sync"
	"time"
)

// schedLatencies is the runtime's histogram of how long goroutines were
// runnable before they ran: when the CPUs are all busy (with this process
// or another), they wait.
const schedLatencies = "/sched/latencies:seconds"

// minSamples is the schedulings an interval needs for its quantile to
// mean anything; an idle process is not waiting for a CPU.
const minSamples = 100

// CPUWait samples how long the process's goroutines wait for a CPU: the
// 99th percentile of that wait over the last interval. It reads the
// runtime's counters at most once an interval, when asked, so it runs no
// goroutine of its own.
type CPUWait struct {
	every time.Duration
	read  func() *metrics.Float64Histogram

	mu   sync.Mutex
	at   time.Time
	prev []uint64
	last time.Duration
}

// NewCPUWait returns a CPUWait over intervals of every.
func NewCPUWait(every time.Duration) *CPUWait {
	s := []metrics.Sample{{Name: schedLatencies}}
	return &CPUWait{every: every, read: func() *metrics.Float64Histogram {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindFloat64Histogram {
			return nil
		}
		return s[0].Value.Float64Histogram()
	}}
}

// P99 is the 99th percentile of the wait over the last whole interval
// before now (0 until one has passed, or when the runtime has no such
// counter).
func (w *CPUWait) P99(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.at.IsZero() && now.Sub(w.at) < w.every && !now.Before(w.at) {
		return w.last
	}
	h := w.read()
	if h == nil {
		return 0
	}
	if w.prev != nil && len(w.prev) == len(h.Counts) {
		w.last = Quantile(h.Buckets, w.prev, h.Counts, 0.99)
	}
	w.prev = append(w.prev[:0], h.Counts...)
	w.at = now
	return w.last
}

// Quantile is the q quantile of what a cumulative histogram counted
// between two reads (before, after: counts per bucket; buckets: their
// boundaries in seconds, one more than the counts), as the lower boundary
// of the bucket it falls in. Fewer than minSamples counted give 0.
func Quantile(buckets []float64, before, after []uint64, q float64) time.Duration {
	var total uint64
	for i := range after {
		total += after[i] - before[i]
	}
	if total < minSamples {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i := range after {
		seen += after[i] - before[i]
		if seen >= want {
			lo := buckets[i]
			if math.IsInf(lo, -1) || lo < 0 {
				return 0
			}
			return time.Duration(lo * float64(time.Second))
		}
	}
	return 0
}
