package console

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func openDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestSamplesKeptADay: samples live in the bbolt file for 25 hours, and
// survive a restart.
func TestSamplesKeptADay(t *testing.T) {
	db := openDB(t)
	s, err := openSamples(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{now.Add(-26 * time.Hour), now.Add(-24 * time.Hour), now.Add(-time.Minute), now} {
		if err := s.add(sample{At: at, Accepted: 1}); err != nil {
			t.Fatal(err)
		}
	}
	again, err := openSamples(db)
	if err != nil {
		t.Fatal(err)
	}
	all, err := again.since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || !all[0].At.Equal(now.Add(-24*time.Hour)) || !all[2].At.Equal(now) {
		t.Errorf("kept %+v, want the last three (the one of 26 h ago pruned)", all)
	}
	recent, _ := again.since(now.Add(-time.Hour))
	if len(recent) != 2 {
		t.Errorf("since an hour ago: %+v", recent)
	}
}

func TestBucketsAndChart(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	// A sample a minute for the last 90 minutes, 10 events each; the
	// gateway restarted 20 minutes ago (its counter started again), and
	// took no sample from 40 to 30 minutes ago.
	var list []sample
	total := 0.0
	for m := 90; m >= 0; m-- {
		at := now.Add(-time.Duration(m) * time.Minute)
		total += 10
		if m == 20 {
			total = 10
		}
		if m < 40 && m > 30 {
			continue
		}
		list = append(list, sample{At: at, Accepted: total})
	}
	got := buckets(list, now.Add(-time.Hour), time.Minute, 60, func(s sample) float64 { return s.Accepted })
	for i, v := range got {
		minsAgo := 59 - i
		switch {
		case minsAgo > 30 && minsAgo < 40:
			if !math.IsNaN(v) {
				t.Errorf("%d minutes ago: %v, want a gap", minsAgo, v)
			}
		case minsAgo == 30:
			if v != 100 {
				t.Errorf("the minute after the gap: %v, want its 10 minutes' 100", v)
			}
		default:
			if v != 10 {
				t.Errorf("%d minutes ago: %v, want 10", minsAgo, v)
			}
		}
	}
	svg := string(chart("c", "Last hour <x>", now.Add(-time.Hour), time.Minute, []series{{Name: "events accepted", Class: "accepted", Values: got}}))
	for _, want := range []string{`data-series="accepted" data-total="600"`, `>events accepted 600<`, `>09:00Z<`, `>09:30Z<`, `>10:00Z<`, `aria-label="Last hour &lt;x&gt;"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %s:\n%s", want, svg)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 2 {
		t.Errorf("%d lines, want 2 (the gap breaks it)", n)
	}
	day := buckets(list, now.Add(-24*time.Hour), 15*time.Minute, 96, func(s sample) float64 { return s.Accepted })
	// Each quarter of an hour holds 150, the one with the gap too (5
	// minutes of 10 and the 100 after the gap); before the first sample,
	// gaps.
	for i, want := range map[int]float64{95: 150, 94: 150, 93: 150, 90: 150, 89: math.NaN(), 0: math.NaN()} {
		if got := day[i]; got != want && !(math.IsNaN(want) && math.IsNaN(got)) {
			t.Errorf("day quarter %d: %v, want %v", i, got, want)
		}
	}
}
