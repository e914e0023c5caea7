package console

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cartera/internal/clocktest"
)

// fixedLag is an event log that is always the same distance behind.
type fixedLag struct {
	events uint64
	age    time.Duration
}

func (l fixedLag) Lag() (uint64, time.Duration) { return l.events, l.age }

// TestOverviewLagAndRates: the Overview shows the event log's apply lag,
// each source's events per second and each channel's actions per second
// since the previous sample, and says when it has no sample to rate from.
func TestOverviewLagAndRates(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	reg, accepted, actions := overviewMetrics()
	r := newRig(t, &pagedAudiences{}, clock, func(o *Options) {
		o.Metrics, o.EventLog = reg, fixedLag{events: 42, age: 2500 * time.Millisecond}
	})
	accepted.WithLabelValues("app", "track").Add(100)
	actions.WithLabelValues("cart", "send", "email").Add(10)
	actions.WithLabelValues("cart", "enter", "").Add(3)

	cell := func(page, row, class string) string {
		t.Helper()
		i := strings.Index(page, row)
		if i < 0 {
			t.Fatalf("no %s in:\n%s", row, page)
		}
		tr := page[i : i+strings.Index(page[i:], "</tr>")]
		j := strings.Index(tr, `class="`+class+`">`)
		if j < 0 {
			t.Fatalf("no %s cell in %s", class, tr)
		}
		tr = tr[j+len(`class="`+class+`">`):]
		return tr[:strings.Index(tr, "<")]
	}
	// No sample yet: totals, no rate.
	_, page := r.get(t, RoleViewer, "/console/")
	if got := cell(page, `<tr data-source="app">`, "rate"); got != "—" {
		t.Errorf("app's rate with no sample: %q", got)
	}
	if !strings.Contains(page, `<span id="lag-events">42</span>`) || !strings.Contains(page, `<span id="lag-seconds">2.5 s</span>`) {
		t.Errorf("the apply lag is not 42 events, 2.5 s:\n%s", page)
	}
	if strings.Contains(page, `data-channel=""`) {
		t.Error("actions without a channel are listed as a channel")
	}

	r.c.Sample() // 10:00: app 100, email 10
	clock.Advance(time.Minute)
	accepted.WithLabelValues("app", "track").Add(30)
	accepted.WithLabelValues("app", "identify").Add(30)
	accepted.WithLabelValues("pos", "track").Add(6)
	actions.WithLabelValues("cart", "send", "email").Add(12)
	actions.WithLabelValues("cart", "suppressed", "email").Add(3)
	actions.WithLabelValues("tier", "pass_update", "wallet").Add(6)
	_, page = r.get(t, RoleViewer, "/console/")
	for _, tc := range []struct{ row, class, want string }{
		{`<tr data-source="app">`, "rate", "1.00/s"},
		{`<tr data-source="pos">`, "rate", "0.10/s"},
		{`<tr data-channel="email">`, "total", "25"},
		{`<tr data-channel="email">`, "rate", "0.25/s"},
		{`<tr data-channel="wallet">`, "rate", "0.10/s"},
	} {
		if got := cell(page, tc.row, tc.class); got != tc.want {
			t.Errorf("%s %s = %q, want %q", tc.row, tc.class, got, tc.want)
		}
	}

	// The last hour's sparklines leave out a sample of an earlier version
	// (no counters by source), rather than read it as zero.
	if err := r.c.samples.add(sample{At: clock.Now().Add(-90 * time.Second), Accepted: 5}); err != nil {
		t.Fatal(err)
	}
	r.c.Sample() // 10:01: app 160
	clock.Advance(time.Minute)
	accepted.WithLabelValues("app", "track").Add(120)
	_, page = r.get(t, RoleViewer, "/console/")
	if want := `aria-label="events from app per minute, last 2 minutes, peak 120"`; !strings.Contains(page, want) {
		t.Errorf("the overview lacks %s:\n%s", want, page)
	}
	if want := `aria-label="actions on email per minute, last 2 minutes, peak 15"`; !strings.Contains(page, want) {
		t.Errorf("the overview lacks %s", want)
	}

	// A restart's counters start again from zero and count from there.
	r2 := newRig(t, &pagedAudiences{}, clock, func(o *Options) { o.Metrics = prometheus.NewRegistry() })
	if _, page = r2.get(t, RoleViewer, "/console/"); !strings.Contains(page, "No event log in this process.") {
		t.Error("without an event log the Overview does not say so")
	}
	if got := perSecond([]sample{{At: clock.Now().Add(-10 * time.Second), Sources: map[string]float64{"app": 500}}}, clock.Now(), map[string]float64{"app": 20}, func(s sample) map[string]float64 { return s.Sources }); got[0].PerSec != 2 {
		t.Errorf("after a restart: %v, want 2/s", got)
	}
}

// TestOverviewDaySparks: each source and channel has a sparkline of the
// last day, per quarter of an hour, starting at the first quarter sampled
// (not a day of zeros) and leaving out samples of earlier versions.
func TestOverviewDaySparks(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	reg, accepted, actions := overviewMetrics()
	r := newRig(t, &pagedAudiences{}, clock, func(o *Options) { o.Metrics = reg })
	// An earlier version's sample two hours back: no counters by source.
	if err := r.c.samples.add(sample{At: clock.Now().Add(-2 * time.Hour), Accepted: 5}); err != nil {
		t.Fatal(err)
	}
	// Samples every 15 minutes over the last hour: app sends 30 a quarter,
	// 90 in the last one.
	clock.Advance(-time.Hour)
	for q := range 4 {
		n := 30.0
		if q == 3 {
			n = 90
		}
		accepted.WithLabelValues("app", "track").Add(n)
		actions.WithLabelValues("cart", "send", "email").Add(n / 10)
		r.c.Sample()
		clock.Advance(15 * time.Minute)
	}
	_, page := r.get(t, RoleViewer, "/console/")
	for _, want := range []string{
		`aria-label="events from app per 15 minutes, last 4 quarters of an hour, peak 90"`,
		`aria-label="actions on email per 15 minutes, last 4 quarters of an hour, peak 9"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %s", want)
		}
	}
}

// overviewMetrics is a registry with the two counters the Overview rates:
// events accepted by source and type, journey actions by channel.
func overviewMetrics() (reg *prometheus.Registry, accepted, actions *prometheus.CounterVec) {
	reg = prometheus.NewRegistry()
	accepted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cartera_events_accepted_total"}, []string{"source", "type"})
	actions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cartera_journey_actions_total"}, []string{"journey", "action", "channel"})
	reg.MustRegister(accepted, actions)
	return reg, accepted, actions
}
