package console

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/internal/clocktest"
	"cartera/journeys"
	"cartera/rules"
)

// pagedAudiences holds audiences in memory and pages them as
// rules.Engine.Members does (profile id order, after an id, next "" on the
// last page); failAfter makes the page after that id fail.
type pagedAudiences struct {
	members   map[string][]rules.Member
	calls     []string
	failAfter string
}

func (p *pagedAudiences) Audiences() ([]rules.AudienceInfo, error) {
	var out []rules.AudienceInfo
	for _, n := range []string{"customers", "vip"} {
		out = append(out, rules.AudienceInfo{Name: n, Expression: "true", Size: int64(len(p.members[n]))})
	}
	return out, nil
}

func (p *pagedAudiences) Members(audience, after string, limit int) ([]rules.Member, string, error) {
	p.calls = append(p.calls, fmt.Sprintf("%s after %q limit %d", audience, after, limit))
	if after != "" && after == p.failAfter {
		return nil, "", errors.New("disk on fire")
	}
	all := p.members[audience]
	i, _ := slices.BinarySearchFunc(all, after, func(m rules.Member, id string) int { return strings.Compare(m.ProfileID, id) })
	if i < len(all) && after != "" && all[i].ProfileID == after {
		i++
	}
	end := min(i+limit, len(all))
	next := ""
	if end < len(all) {
		next = all[end-1].ProfileID
	}
	return slices.Clone(all[i:end]), next, nil
}

// rig is a console on a real bbolt file with the given audiences, its
// routes on a Fiber app, and a session per role.
type rig struct {
	c       *Console
	app     *fiber.App
	cookies map[Role]string
}

func newRig(t *testing.T, aud Audiences, clock *clocktest.Clock, more ...func(*Options)) *rig {
	t.Helper()
	return newRigConfig(t, DefaultConfig(), aud, clock, more...)
}

// newRigConfig is newRig with the console's config.
func newRigConfig(t *testing.T, cfg Config, aud Audiences, clock *clocktest.Clock, more ...func(*Options)) *rig {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	type noPeople struct{ People }
	o := Options{DB: db, People: noPeople{}, Journeys: noJourneys{}, Audiences: aud, Now: clock.Now}
	for _, f := range more {
		f(&o)
	}
	c, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	c.Mount(app)
	r := &rig{c: c, app: app, cookies: map[Role]string{}}
	for _, role := range []Role{RoleViewer, RoleMarketer, RoleAdmin} {
		r.cookies[role] = c.sessions.create("u-"+string(role), role, clock.Now()).id
	}
	return r
}

func (r *rig) get(t *testing.T, role Role, path string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.AddCookie(&http.Cookie{Name: cookieSession, Value: r.cookies[role]})
	resp, err := r.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// noJourneys is the console's Journeys for tests of other pages.
type noJourneys struct{}

func (noJourneys) Journeys() ([]Journey, error)     { return nil, nil }
func (noJourneys) Journey(string) (*Journey, error) { return nil, nil }
func (noJourneys) Period(string, time.Time, time.Time) (map[string]journeys.StepCounts, error) {
	return nil, nil
}
func (noJourneys) Reload(context.Context, bool) (*ReloadResult, error) { return &ReloadResult{}, nil }

func membersOf(n int, at time.Time) []rules.Member {
	out := make([]rules.Member, n)
	for i := range out {
		out[i] = rules.Member{ProfileID: fmt.Sprintf("p%05d", i), EnteredAt: at.Add(time.Duration(i) * time.Second)}
	}
	return out
}

// TestAudienceCSVExport: every member, page by page, in two columns;
// viewers are refused; the export is in the audit log; a page that fails
// mid-stream ends the file with an error line.
func TestAudienceCSVExport(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.FixedZone("CET", 3600)))
	aud := &pagedAudiences{members: map[string][]rules.Member{"customers": membersOf(2*exportPage+5, clock.Now())}}
	r := newRig(t, aud, clock)

	if resp, _ := r.get(t, RoleViewer, "/console/audiences/customers/export.csv"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer's export: %d, want 403", resp.StatusCode)
	}
	if _, page := r.get(t, RoleViewer, "/console/audiences/customers"); strings.Contains(page, "export.csv") {
		t.Error("the viewer's audience page offers the export")
	}
	if _, page := r.get(t, RoleMarketer, "/console/audiences/customers"); !strings.Contains(page, `href="/console/audiences/customers/export.csv"`) {
		t.Error("the marketer's audience page lacks the export link")
	}
	if resp, _ := r.get(t, RoleMarketer, "/console/audiences/nope/export.csv"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown audience: %d, want 404", resp.StatusCode)
	}

	aud.calls = nil
	resp, body := r.get(t, RoleMarketer, "/console/audiences/customers/export.csv")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") != `attachment; filename="audience-customers.csv"` ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("export: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Disposition"), resp.Header.Get("Content-Type"))
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"profile_id", "entered_at"}}
	for _, m := range aud.members["customers"] {
		want = append(want, []string{m.ProfileID, m.EnteredAt.UTC().Format(time.RFC3339)})
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Fatalf("export has %d rows (first %v, last %v), want %d", len(rows), rows[min(1, len(rows)-1)], rows[len(rows)-1], len(want))
	}
	if rows[1][1] != "2026-12-06T09:00:00Z" {
		t.Errorf("entered_at %q, want RFC 3339 in UTC", rows[1][1])
	}
	wantCalls := []string{`customers after "" limit 1000`, `customers after "p00999" limit 1000`, `customers after "p01999" limit 1000`}
	if !slices.Equal(aud.calls, wantCalls) {
		t.Errorf("pages read %q, want %q", aud.calls, wantCalls)
	}

	entries, err := r.c.audit.Recent(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].User != "u-marketer" || entries[0].Action != "export_audience" || entries[0].Target != "audience customers" {
		t.Errorf("audit log %+v, want one export_audience of customers by u-marketer", entries)
	}

	aud.failAfter = "p00999"
	_, body = r.get(t, RoleAdmin, "/console/audiences/customers/export.csv")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != exportPage+2 || lines[len(lines)-1] != "error,disk on fire" {
		t.Errorf("a failing second page: %d lines ending %q, want %d ending with the error", len(lines), lines[len(lines)-1], exportPage+2)
	}
}

func TestLevels(t *testing.T) {
	from := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	at := func(m int, size int64) sample {
		return sample{At: from.Add(time.Duration(m) * time.Minute), Sizes: map[string]int64{"vip": size}}
	}
	list := []sample{at(-5, 1), at(0, 2), at(3, 3), at(14, 4), at(15, 5), {At: from.Add(20 * time.Minute)}, at(31, 7), at(61, 9)}
	got := levels(list, from, 15*time.Minute, 4, func(s sample) (float64, bool) {
		n, ok := s.Sizes["vip"]
		return float64(n), ok
	})
	// Before from and after the last step: left out; the last value in a
	// step wins (minute 15 closes the first step); a step whose only
	// sample lacks the audience is a gap.
	want := []float64{5, math.NaN(), 7, math.NaN()}
	for i := range want {
		if got[i] != want[i] && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
			t.Fatalf("levels = %v, want %v", got, want)
		}
	}
}

// TestAudienceSizeChart: Sample keeps each audience's size, and the
// audience page draws the day's sizes, the last one now's.
func TestAudienceSizeChart(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	aud := &pagedAudiences{members: map[string][]rules.Member{"customers": membersOf(3, clock.Now()), "vip": membersOf(1, clock.Now())}}
	r := newRig(t, aud, clock)
	for _, n := range []int{3, 40, 12} {
		aud.members["customers"] = membersOf(n, clock.Now())
		r.c.Sample()
		clock.Set(clock.Now().Add(30 * time.Minute))
	}
	list, err := r.c.samples.since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[1].Sizes["customers"] != 40 || list[1].Sizes["vip"] != 1 {
		t.Fatalf("samples %+v, want 3 with customers 40 and vip 1 in the second", list)
	}
	aud.members["customers"] = membersOf(17, clock.Now())
	_, page := r.get(t, RoleViewer, "/console/audiences/customers")
	chart := page[strings.Index(page, `<svg id="chart-size"`):]
	chart = chart[:strings.Index(chart, "</svg>")]
	if !strings.Contains(chart, `data-series="size" data-total="17"`) {
		t.Errorf("the size chart's legend does not give the size now (17):\n%s", chart)
	}
	// Points at 10:00 (3), 10:30 (40), 11:00 (12) and now, 11:30 (17):
	// the tallest, 40, at the top of the plot.
	if n := strings.Count(chart, `cy="22.0"`); n != 1 {
		t.Errorf("%d points at the top of the chart, want 1 (size 40):\n%s", n, chart)
	}
	if strings.Count(chart, `class="line size"`) != 4 {
		t.Errorf("want 4 separate points (15-minute steps with gaps between):\n%s", chart)
	}
}

// queues is the console's Outbox with fixed queues and dead letters.
type queues struct {
	sizes channels.Sizes
	dead  []*channels.Message
}

func (q queues) Sizes() (channels.Sizes, error) { return q.sizes, nil }
func (q queues) List(state string, limit int) ([]*channels.Message, error) {
	if state != channels.StateDead {
		return nil, nil
	}
	var out []*channels.Message
	for _, m := range q.dead {
		c := *m
		out = append(out, &c)
	}
	return out, nil
}
func (queues) InFlight(int) []channels.InFlight { return nil }
func (queues) Retry(uint64) error               { return nil }
func (queues) Drop(uint64) error                { return nil }

// TestAudienceSyncState: an audience mirrored on Meta and Google shows
// each destination's counters from the registry, its queue, its last sync
// (the last sample its delivered counter grew in) and its newest dead
// letter's error, masked for a viewer; an audience without one says so.
func TestAudienceSyncState(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	t0 := clock.Now()
	reg := prometheus.NewRegistry()
	vec := func(name string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name}, []string{"destination"})
		reg.MustRegister(v)
		return v
	}
	delivered, retries, dead := vec("cartera_outbox_delivered_total"), vec("cartera_outbox_retries_total"), vec("cartera_outbox_dead_letters_total")
	ob := queues{sizes: channels.Sizes{Queued: map[string]int{"google:customers": 7, "email": 3}, Dead: 2}, dead: []*channels.Message{
		{Seq: 1, Destination: "google:customers", LastError: "old error", DeadAt: t0.Add(-time.Hour)},
		{Seq: 2, Destination: "google:customers", LastError: "400 bad member ana@example.com", DeadAt: t0},
		{Seq: 3, Destination: "email", LastError: "not this one", DeadAt: t0.Add(time.Minute)},
	}}
	aud := &pagedAudiences{members: map[string][]rules.Member{"customers": membersOf(3, t0)}}
	r := newRig(t, aud, clock, func(o *Options) {
		o.Metrics, o.Outbox = reg, ob
		o.AdDestinations = map[string][]string{"customers": {"meta:customers", "google:customers"}}
	})
	delivered.WithLabelValues("google:customers")
	r.c.Sample() // 10:00: meta 0
	clock.Set(t0.Add(time.Minute))
	delivered.WithLabelValues("meta:customers").Add(5)
	r.c.Sample() // 10:01: meta 5, its last sync
	clock.Set(t0.Add(2 * time.Minute))
	retries.WithLabelValues("google:customers").Add(4)
	dead.WithLabelValues("google:customers").Add(2)
	r.c.Sample() // 10:02: nothing delivered
	clock.Set(t0.Add(3 * time.Minute))

	row := func(page, dest string) string {
		i := strings.Index(page, `<tr data-destination="`+dest+`">`)
		if i < 0 {
			t.Fatalf("no row for %s in:\n%s", dest, page)
		}
		return page[i : i+strings.Index(page[i:], "</tr>")]
	}
	_, page := r.get(t, RoleMarketer, "/console/audiences/customers")
	if got, want := row(page, "meta:customers"), `<td class="last-sync">2026-12-06 10:01:00Z</td><td>5</td><td>0</td><td>0</td><td>0</td>`; !strings.Contains(got, want) {
		t.Errorf("meta row %s\nwant %s", got, want)
	}
	google := row(page, "google:customers")
	if want := `<td class="last-sync">not since the samples began (2026-12-06 10:00:00Z)</td><td>0</td><td>4</td><td>2</td><td>7</td>`; !strings.Contains(google, want) {
		t.Errorf("google row %s\nwant %s", google, want)
	}
	if !strings.Contains(google, "2026-12-06 10:00:00Z: 400 bad member ana@example.com") {
		t.Errorf("google row lacks its newest dead letter's error: %s", google)
	}
	_, page = r.get(t, RoleViewer, "/console/audiences/customers")
	if g := row(page, "google:customers"); strings.Contains(g, "ana@") || !strings.Contains(g, "a***@example.com") {
		t.Errorf("viewer's google row: %s", g)
	}
	clock.Set(t0.Add(4 * time.Minute))
	delivered.WithLabelValues("google:customers").Add(1)
	if _, page = r.get(t, RoleMarketer, "/console/audiences/customers"); !strings.Contains(row(page, "google:customers"), `<td class="last-sync">2026-12-06 10:04:00Z</td>`) {
		t.Errorf("a delivery since the last sample is not the last sync now: %s", row(page, "google:customers"))
	}
	if _, page = r.get(t, RoleMarketer, "/console/audiences/vip"); !strings.Contains(page, `id="sync-none"`) || strings.Contains(page, `id="sync"`) {
		t.Error("an audience without ad destinations does not say so")
	}
}
