package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// percentiles of a set of latencies.
type percentiles struct {
	p50, p90, p99, max time.Duration
}

func summarize(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration {
		return d[min(len(d)-1, int(math.Ceil(q*float64(len(d))))-1)].Round(10 * time.Microsecond)
	}
	return percentiles{at(.50), at(.90), at(.99), d[len(d)-1].Round(10 * time.Microsecond)}
}

func (p percentiles) String() string {
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s", p.p50, p.p90, p.p99, p.max)
}

// scrape reads the gateway's Prometheus metrics at url, with the admin
// token when one is given (the main listener serves them behind it).
func scrape(ctx context.Context, hc *http.Client, url, adminToken string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("status %s: pass the gateway's admin token (--admin-token or CARTERA_ADMIN_TOKEN)", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// report prints what the gateway's metrics say happened between two scrapes.
func report(w io.Writer, before, after map[string]*dto.MetricFamily) {
	for _, h := range []struct{ name, what string }{
		{"cartera_journey_event_to_action_seconds", "event → first journey action committed"},
		{"cartera_journey_purchase_to_suppression_seconds", "purchase → journey exit/audience removal committed"},
		{"cartera_commit_duration_seconds", "group commit (fsync included)"},
	} {
		b, n := histDelta(before[h.name], after[h.name])
		if n == 0 {
			fmt.Fprintf(w, "%s: no observations\n", h.what)
			continue
		}
		fmt.Fprintf(w, "%s: %d observations, p50 %s p90 %s p99 %s (from histogram buckets)\n", h.what, n,
			quantile(b, n, .5), quantile(b, n, .9), quantile(b, n, .99))
	}
	if b, n := histDelta(before["cartera_commit_events"], after["cartera_commit_events"]); n > 0 {
		fmt.Fprintf(w, "events per group commit: mean %.1f over %d commits\n", sumDelta(before["cartera_commit_events"], after["cartera_commit_events"])/float64(n), n)
		_ = b
	}
	fmt.Fprintf(w, "merges: %.0f, audience changes: %.0f, journey actions: %.0f\n",
		counterDelta(before, after, "cartera_profile_merges_total"),
		counterDelta(before, after, "cartera_audience_changes_total"),
		counterDelta(before, after, "cartera_journey_actions_total"))
}

// reportLog prints how far applying the event log kept up between two
// scrapes taken between apart (nothing for a gateway without a log).
func reportLog(w io.Writer, before, after map[string]*dto.MetricFamily, between time.Duration) {
	gauge := func(m map[string]*dto.MetricFamily, name string) (float64, bool) {
		f := m[name]
		if f == nil || len(f.Metric) == 0 {
			return 0, false
		}
		return f.Metric[0].GetGauge().GetValue(), true
	}
	a1, ok := gauge(after, "cartera_eventlog_applied_offset")
	if !ok {
		return
	}
	a0, _ := gauge(before, "cartera_eventlog_applied_offset")
	c0, _ := gauge(before, "cartera_eventlog_appended_offset")
	c1, _ := gauge(after, "cartera_eventlog_appended_offset")
	lagN, _ := gauge(after, "cartera_eventlog_lag_events")
	lagS, _ := gauge(after, "cartera_eventlog_lag_seconds")
	size, _ := gauge(after, "cartera_eventlog_bytes")
	fmt.Fprintf(w, "event log (warm-up included, %s between scrapes): appended %.0f events/s, applied %.0f events/s; lag at the end %.0f events, %.1f s; log %.0f MB\n",
		between.Round(time.Millisecond), (c1-c0)/between.Seconds(), (a1-a0)/between.Seconds(), lagN, lagS, size/1e6)
}

type bucket struct {
	upper float64
	count uint64
}

func histDelta(before, after *dto.MetricFamily) ([]bucket, uint64) {
	if after == nil || len(after.Metric) == 0 || after.Metric[0].Histogram == nil {
		return nil, 0
	}
	ha := after.Metric[0].Histogram
	var hb *dto.Histogram
	if before != nil && len(before.Metric) > 0 {
		hb = before.Metric[0].Histogram
	}
	out := make([]bucket, len(ha.Bucket))
	for i, b := range ha.Bucket {
		out[i] = bucket{b.GetUpperBound(), b.GetCumulativeCount()}
		if hb != nil && i < len(hb.Bucket) {
			out[i].count -= hb.Bucket[i].GetCumulativeCount()
		}
	}
	n := ha.GetSampleCount()
	if hb != nil {
		n -= hb.GetSampleCount()
	}
	return out, n
}

func sumDelta(before, after *dto.MetricFamily) float64 {
	s := after.Metric[0].Histogram.GetSampleSum()
	if before != nil && len(before.Metric) > 0 {
		s -= before.Metric[0].Histogram.GetSampleSum()
	}
	return s
}

func counterDelta(before, after map[string]*dto.MetricFamily, name string) float64 {
	sum := func(f *dto.MetricFamily) float64 {
		if f == nil {
			return 0
		}
		s := 0.0
		for _, m := range f.Metric {
			s += m.GetCounter().GetValue()
		}
		return s
	}
	return sum(after[name]) - sum(before[name])
}

// quantile interpolates within the bucket that holds rank q·n, as
// Prometheus' histogram_quantile does.
func quantile(b []bucket, n uint64, q float64) string {
	rank := q * float64(n)
	lower, prev := 0.0, uint64(0)
	for _, bk := range b {
		if float64(bk.count) >= rank {
			if math.IsInf(bk.upper, 1) {
				// Past the last finite bucket: only a bound is known.
				return fmt.Sprintf("> %s", time.Duration(lower*float64(time.Second)))
			}
			in := float64(bk.count - prev)
			v := bk.upper
			if in > 0 {
				v = lower + (bk.upper-lower)*(rank-float64(prev))/in
			}
			return time.Duration(v * float64(time.Second)).Round(10 * time.Microsecond).String()
		}
		lower, prev = bk.upper, bk.count
	}
	return fmt.Sprintf("> %s", time.Duration(lower*float64(time.Second)))
}
