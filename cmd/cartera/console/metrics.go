package console

import (
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reading is one look at the counters the Overview shows, from the
// binary's Prometheus registry.
type reading struct {
	At time.Time
	// Accepted are events committed, by source (summed over types).
	Accepted map[string]float64
	// Rejected are events refused, by source.
	Rejected map[string]float64
	// Delivered, Retried, Dead and Suppressed are outbox counters by
	// destination.
	Delivered, Retried, Dead, Suppressed map[string]float64
	// Actions are journey actions by action (enter, send, ...).
	Actions map[string]float64
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// read gathers the counters by name, summed by one label.
func read(g prometheus.Gatherer, at time.Time) (reading, error) {
	r := reading{At: at, Accepted: map[string]float64{}, Rejected: map[string]float64{}, Delivered: map[string]float64{},
		Retried: map[string]float64{}, Dead: map[string]float64{}, Suppressed: map[string]float64{}, Actions: map[string]float64{}}
	want := map[string]struct {
		into  map[string]float64
		label string
	}{
		"cartera_events_accepted_total":     {r.Accepted, "source"},
		"cartera_events_rejected_total":     {r.Rejected, "source"},
		"cartera_outbox_delivered_total":    {r.Delivered, "destination"},
		"cartera_outbox_retries_total":      {r.Retried, "destination"},
		"cartera_outbox_dead_letters_total": {r.Dead, "destination"},
		"cartera_outbox_suppressed_total":   {r.Suppressed, "destination"},
		"cartera_journey_actions_total":     {r.Actions, "action"},
	}
	if g == nil {
		return r, nil
	}
	mfs, err := g.Gather()
	if err != nil {
		return r, fmt.Errorf("gather metrics: %w", err)
	}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == w.label {
					key = lp.GetValue()
				}
			}
			if c := m.GetCounter(); c != nil {
				w.into[key] += c.GetValue()
			}
		}
	}
	return r, nil
}

// series are the totals the sparklines draw, one sample a minute.
type sample struct {
	At                          time.Time
	Accepted, Delivered, Failed float64
}

// samples keeps the last hour of samples in memory (lost on restart; the
// Overview says so). Charts over a day are not built.
type samples struct {
	mu   sync.Mutex
	list []sample
	keep int
}

func newSamples(keep int) *samples { return &samples{keep: keep} }

func (s *samples) add(r reading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, sample{At: r.At, Accepted: sum(r.Accepted), Delivered: sum(r.Delivered), Failed: sum(r.Retried) + sum(r.Dead)})
	if len(s.list) > s.keep {
		s.list = slices.Delete(s.list, 0, len(s.list)-s.keep)
	}
}

func (s *samples) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

// rates turns cumulative samples into per-minute increases (a counter
// reset, after a restart, counts from zero).
func rates(list []sample, pick func(sample) float64) []float64 {
	var out []float64
	for i := 1; i < len(list); i++ {
		d := pick(list[i]) - pick(list[i-1])
		if d < 0 {
			d = pick(list[i])
		}
		mins := list[i].At.Sub(list[i-1].At).Minutes()
		if mins <= 0 {
			mins = 1
		}
		out = append(out, d/mins)
	}
	return out
}

// sparkline draws values as an inline SVG polyline, scaled to its maximum.
// It writes only numbers it formats itself, so the HTML is safe.
func sparkline(values []float64, label string) template.HTML {
	const w, h = 240.0, 40.0
	if len(values) < 2 {
		return template.HTML(fmt.Sprintf(`<svg class="spark" width="%.0f" height="%.0f" role="img" aria-label="%s: not enough samples yet"><text x="4" y="24" font-size="11">collecting samples…</text></svg>`, w, h, template.HTMLEscapeString(label)))
	}
	top := slices.Max(values)
	if top <= 0 {
		top = 1
	}
	var pts strings.Builder
	for i, v := range values {
		x := float64(i) * w / float64(len(values)-1)
		y := h - 2 - (v/top)*(h-4)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s per minute, last %d minutes, peak %.0f"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/></svg>`,
		w, h, w, h, template.HTMLEscapeString(label), len(values), top, strings.TrimSpace(pts.String())))
}

// row is one line of a table of counters by name.
type row struct {
	Name  string
	Value float64
}

func rowsOf(m map[string]float64) []row {
	out := make([]row, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, row{Name: k, Value: m[k]})
	}
	return out
}
