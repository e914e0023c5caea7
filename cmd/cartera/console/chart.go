package console

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// buckets turns cumulative samples into counts per step over n steps
// after from: each sample's increase over the one before goes to the step
// it was taken in (step i is from+i*step exclusive to from+(i+1)*step
// inclusive, so a sample taken now is in the last) (a counter that went back, after a restart, counts from
// zero). A step no sample ends in is NaN: the gateway was not running, or
// not sampling, then.
func buckets(list []sample, from time.Time, step time.Duration, n int, pick func(sample) float64) []float64 {
	out := make([]float64, n)
	seen := make([]bool, n)
	for i := 1; i < len(list); i++ {
		after := list[i].At.Sub(from)
		idx := int((after - 1) / step)
		if after <= 0 || idx >= n {
			continue
		}
		d := pick(list[i]) - pick(list[i-1])
		if d < 0 {
			d = pick(list[i])
		}
		out[idx] += d
		seen[idx] = true
	}
	for i := range out {
		if !seen[i] {
			out[i] = math.NaN()
		}
	}
	return out
}

// series is one line of a chart.
type series struct {
	Name, Class string
	Values      []float64
	// Level: the values are a gauge's (a size), and the legend gives the
	// last one rather than their sum.
	Level bool
}

// chart draws series over n steps from from as an SVG line chart with a
// scale, start, middle and end times, and a legend. Gaps (NaN) break the
// lines. It writes only numbers and escaped names.
func chart(id, title string, from time.Time, step time.Duration, all []series) template.HTML {
	const w, h, left, bottom, top = 600.0, 160.0, 48.0, 22.0, 22.0
	plotW, plotH := w-left-8, h-bottom-top
	peak := 0.0
	n := 0
	for _, s := range all {
		n = max(n, len(s.Values))
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				peak = max(peak, v)
			}
		}
	}
	scale := peak
	if scale <= 0 {
		scale = 1
	}
	x := func(i int) float64 { return left + plotW*(float64(i)+0.5)/float64(max(n, 1)) }
	y := func(v float64) float64 { return top + plotH - v/scale*plotH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, esc(id), w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<text class="ctitle" x="%.0f" y="14">%s</text>`, left, esc(title))
	for _, f := range []float64{0, 0.5, 1} {
		yy := y(scale * f)
		fmt.Fprintf(&b, `<line class="grid" x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f"/><text class="axis" x="%.0f" y="%.1f" text-anchor="end">%s</text>`,
			left, w-8, yy, yy, left-4, yy+4, axisNum(scale*f))
	}
	for _, i := range []int{0, n / 2, n} {
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case n:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.0f" text-anchor="%s">%s</text>`, left+plotW*float64(i)/float64(max(n, 1)), h-6, anchor, from.Add(time.Duration(i)*step).UTC().Format("15:04Z"))
	}
	lx := w - 8.0
	for k := len(all) - 1; k >= 0; k-- {
		s := all[k]
		total := 0.0
		var pts strings.Builder
		flush := func() {
			if p := strings.TrimSpace(pts.String()); p != "" {
				if !strings.Contains(p, " ") { // one point: a dot
					var px, py float64
					fmt.Sscanf(p, "%f,%f", &px, &py)
					fmt.Fprintf(&b, `<circle class="line %s" cx="%.1f" cy="%.1f" r="1.8"/>`, esc(s.Class), px, py)
				} else {
					fmt.Fprintf(&b, `<polyline class="line %s" points="%s"/>`, esc(s.Class), p)
				}
			}
			pts.Reset()
		}
		for i, v := range s.Values {
			if math.IsNaN(v) {
				flush()
				continue
			}
			if s.Level {
				total = v
			} else {
				total += v
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
		}
		flush()
		label := fmt.Sprintf("%s %s", s.Name, axisNum(total))
		fmt.Fprintf(&b, `<text class="legend %s" data-series="%s" data-total="%.0f" x="%.1f" y="14" text-anchor="end">%s</text>`, esc(s.Class), esc(s.Class), total, lx, esc(label))
		lx -= float64(len(label))*6.4 + 14
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// axisNum writes a count shortly: 950, 1.2k, 3.4M.
func axisNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// overviewCharts are the Overview's charts of the last hour (a point a
// minute) and the last day (a point per 15 minutes).
func overviewCharts(list []sample, now time.Time) (hour, day template.HTML) {
	draw := func(id, title string, span, step time.Duration) template.HTML {
		n := int(span / step)
		from := now.Add(-span)
		return chart(id, title, from, step, []series{
			{Name: "events accepted", Class: "accepted", Values: buckets(list, from, step, n, func(s sample) float64 { return s.Accepted })},
			{Name: "deliveries", Class: "delivered", Values: buckets(list, from, step, n, func(s sample) float64 { return s.Delivered })},
			{Name: "failures", Class: "failed", Values: buckets(list, from, step, n, func(s sample) float64 { return s.Failed })},
		})
	}
	return draw("chart-hour", "Last hour, per minute", time.Hour, time.Minute), draw("chart-day", "Last day, per 15 minutes", 24*time.Hour, 15*time.Minute)
}
