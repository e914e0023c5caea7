package console

import (
	"html/template"
	"maps"
	"math"
	"slices"
	"time"
)

// EventLog is what the Overview reads of the event log: how far applying
// is behind it (*profiles.Store is one; the same numbers as the gauges
// cartera_eventlog_lag_events and cartera_eventlog_lag_seconds).
type EventLog interface {
	Lag() (events uint64, age time.Duration)
}

// rateRow is a counter with its rate per second since the newest earlier
// sample (about the last minute).
type rateRow struct {
	Name  string
	Total float64
	// PerSec is the rate; Known is false while no earlier sample has the
	// counter (the first minute after an upgrade).
	PerSec float64
	Known  bool
	// Spark draws its increase a minute over the last hour, DaySpark a
	// quarter of an hour over the last day.
	Spark, DaySpark template.HTML
}

// withSparks draws each row's increase per minute over the samples of the
// last hour that keep it (pick is nil in samples of earlier versions,
// which are left out rather than read as zero).
func withSparks(rows []rateRow, hour []sample, pick func(sample) map[string]float64, what string) []rateRow {
	kept := slices.DeleteFunc(slices.Clone(hour), func(s sample) bool { return pick(s) == nil })
	for i := range rows {
		name := rows[i].Name
		rows[i].Spark = sparklineSized(rates(kept, func(s sample) float64 { return pick(s)[name] }), what+" "+name, 120, 24)
	}
	return rows
}

// withDaySparks draws each row's increase per 15 minutes over the last
// day before now, from the first quarter sampled on (a store that started
// an hour ago draws four points, not a day of zeros); samples of earlier
// versions (pick nil) are left out, and a quarter nothing was sampled in
// counts as none.
func withDaySparks(rows []rateRow, list []sample, now time.Time, pick func(sample) map[string]float64, what string) []rateRow {
	kept := slices.DeleteFunc(slices.Clone(list), func(s sample) bool { return pick(s) == nil })
	const quarter, quarters = 15 * time.Minute, 96
	for i := range rows {
		name := rows[i].Name
		v := buckets(kept, now.Add(-quarters*quarter), quarter, quarters, func(s sample) float64 { return pick(s)[name] })
		first := slices.IndexFunc(v, func(x float64) bool { return !math.IsNaN(x) })
		if first < 0 {
			v = nil
		} else {
			v = v[first:]
			for j, x := range v {
				if math.IsNaN(x) {
					v[j] = 0
				}
			}
		}
		rows[i].DaySpark = sparklineStep(v, what+" "+name, 120, 24, "15 minutes", "quarters of an hour")
	}
	return rows
}

// perSecond rates the counters of cur against the newest sample taken
// before now that holds them (pick returns nil for samples of versions
// that did not keep them). A counter that went down started again from
// zero with a restart, and counts from there.
func perSecond(list []sample, now time.Time, cur map[string]float64, pick func(sample) map[string]float64) []rateRow {
	var prev map[string]float64
	var secs float64
	for i := len(list) - 1; i >= 0; i-- {
		s := list[i]
		if d := now.Sub(s.At).Seconds(); d >= 1 && pick(s) != nil {
			prev, secs = pick(s), d
			break
		}
	}
	out := make([]rateRow, 0, len(cur))
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		r := rateRow{Name: k, Total: cur[k]}
		if prev != nil {
			d := cur[k] - prev[k]
			if d < 0 {
				d = cur[k]
			}
			r.PerSec, r.Known = d/secs, true
		}
		out = append(out, r)
	}
	return out
}

// lag is the event log's apply lag as the Overview shows it.
type lag struct {
	Events uint64
	Age    time.Duration
	// Off is true when the console has no event log to ask.
	Off bool
}

func (c *Console) lag() lag {
	if c.o.EventLog == nil {
		return lag{Off: true}
	}
	n, age := c.o.EventLog.Lag()
	return lag{Events: n, Age: age}
}
