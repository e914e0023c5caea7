package console

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
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
	// Channels are journey actions that have a channel (sends,
	// suppressions, audience changes, pass updates), by channel.
	Channels map[string]float64
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
		Retried: map[string]float64{}, Dead: map[string]float64{}, Suppressed: map[string]float64{}, Actions: map[string]float64{}, Channels: map[string]float64{}}
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
			c := m.GetCounter()
			if c == nil {
				continue
			}
			w.into[key] += c.GetValue()
			if mf.GetName() == "cartera_journey_actions_total" {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "channel" && lp.GetValue() != "" {
						r.Channels[lp.GetValue()] += c.GetValue()
					}
				}
			}
		}
	}
	return r, nil
}

// sample is the totals the charts draw, taken once a minute.
type sample struct {
	At        time.Time `json:"at"`
	Accepted  float64   `json:"accepted"`
	Delivered float64   `json:"delivered"`
	Failed    float64   `json:"failed"`
	// Sizes are the audiences' sizes (rules.AudienceInfo.Size), by name.
	Sizes map[string]int64 `json:"sizes,omitempty"`
	// Synced are the delivered counters of the destinations that mirror
	// audiences on ad platforms (Options.AdDestinations), by destination:
	// the last sample in which one grew is that destination's last sync.
	Synced map[string]float64 `json:"synced,omitempty"`
	// Sources are the accepted counters by source, and Channels the
	// journey actions by channel, for the Overview's rates per second
	// (absent in samples of earlier versions).
	Sources  map[string]float64 `json:"sources"`
	Channels map[string]float64 `json:"channels"`
}

func sampleOf(r reading) sample {
	return sample{At: r.At, Accepted: sum(r.Accepted), Delivered: sum(r.Delivered), Failed: sum(r.Retried) + sum(r.Dead),
		Sources: maps.Clone(r.Accepted), Channels: maps.Clone(r.Channels)}
}

// The samples are kept in the gateway's bbolt file, so that the charts of
// the last day survive a restart (a restart's counters start again from
// zero, which rates reads as such):
//
//	console_samples  8-byte big-endian unix seconds → JSON sample; kept for sampleKeep
var bucketSamples = []byte("console_samples")

// sampleKeep is how long samples are kept: the day chart and a little.
const sampleKeep = 25 * time.Hour

// samples is the console's store of samples.
type samples struct {
	db *bbolt.DB
}

func openSamples(db *bbolt.DB) (*samples, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSamples)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open console samples: %w", err)
	}
	return &samples{db: db}, nil
}

func sampleKey(t time.Time) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(max(t.Unix(), 0)))
	return k[:]
}

// add keeps a sample and drops those older than sampleKeep.
func (s *samples) add(x sample) error {
	v, err := json.Marshal(x)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSamples)
		if err := b.Put(sampleKey(x.At), v); err != nil {
			return err
		}
		cutoff := sampleKey(x.At.Add(-sampleKeep))
		c := b.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, cutoff) < 0; k, _ = c.First() {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keep console sample: %w", err)
	}
	return nil
}

// since returns the samples taken at or after from, oldest first.
func (s *samples) since(from time.Time) ([]sample, error) {
	var out []sample
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSamples).Cursor()
		for k, v := c.Seek(sampleKey(from)); k != nil; k, v = c.Next() {
			var x sample
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("decode console sample %x: %w", k, err)
			}
			out = append(out, x)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read console samples: %w", err)
	}
	return out, nil
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
	return sparklineSized(values, label, 240, 40)
}

// sparklineSized is sparkline at another size.
func sparklineSized(values []float64, label string, w, h float64) template.HTML {
	return sparklineStep(values, label, w, h, "minute", "minutes")
}

// sparklineStep is sparklineSized with values per step other than a
// minute (its label names the step and, in the plural, how many).
func sparklineStep(values []float64, label string, w, h float64, step, steps string) template.HTML {
	if len(values) < 2 {
		return template.HTML(fmt.Sprintf(`<svg class="spark" width="%.0f" height="%.0f" role="img" aria-label="%s: not enough samples yet"><text x="4" y="%.0f" font-size="11">collecting samples…</text></svg>`, w, h, template.HTMLEscapeString(label), h*0.6))
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
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s per %s, last %d %s, peak %.0f"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/></svg>`,
		w, h, w, h, template.HTMLEscapeString(label), step, len(values), steps, top, strings.TrimSpace(pts.String())))
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
