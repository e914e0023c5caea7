package fairshare_test

import (
	"math"
	"testing"
	"time"

	"cartera/internal/fairshare"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// send is what a key sends every step: a request of n events accepted
// (none when n is 0), and refused requests refused.
type send struct {
	key     string
	n       int
	refused int
}

// TestOver: under a steady mix of keys (one step a tenth of a second, for
// ten seconds, half-life two seconds, margin 1.5, trickle floor 500 a
// second), which keys are over their share.
func TestOver(t *testing.T) {
	for _, c := range []struct {
		name string
		mix  []send
		over map[string]bool
	}{
		{"a key alone is never over, however much it sends",
			[]send{{"flood", 1000, 0}}, map[string]bool{"flood": false}},
		{"a flood beside a trickle: only the flood",
			[]send{{"flood", 350, 0}, {"trickle", 20, 0}}, map[string]bool{"flood": true, "trickle": false}},
		{"two trickles, one four times the other: neither (under the floor)",
			[]send{{"app", 16, 0}, {"pos", 4, 0}}, map[string]bool{"app": false, "pos": false}},
		{"two heavy keys near an even split: neither (within the margin)",
			[]send{{"a", 300, 0}, {"b", 250, 0}}, map[string]bool{"a": false, "b": false}},
		{"three keys: the heaviest only",
			[]send{{"big", 400, 0}, {"mid", 60, 0}, {"small", 2, 0}}, map[string]bool{"big": true, "mid": false, "small": false}},
		{"many trickles and one flood: the flood only",
			[]send{{"flood", 300, 0}, {"t1", 1, 0}, {"t2", 1, 0}, {"t3", 2, 0}, {"t4", 5, 0}, {"t5", 1, 0}}, map[string]bool{"flood": true, "t1": false, "t4": false}},
		{"a flood mostly refused stays the heaviest: a steady key beside it is not over",
			// Counting only what was accepted, steady would have 70 of 92.
			[]send{{"flood", 20, 20}, {"steady", 70, 0}, {"trickle", 2, 0}}, map[string]bool{"flood": true, "steady": false, "trickle": false}},
		{"a key refused from its first request counts one event a request",
			[]send{{"flood", 0, 100}, {"trickle", 2, 0}}, map[string]bool{"flood": true, "trickle": false}},
		{"a key that never sent is not over",
			[]send{{"flood", 300, 0}, {"trickle", 1, 0}}, map[string]bool{"never": false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := fairshare.New(2*time.Second, 1.5, 500)
			now := t0
			for range 100 {
				now = now.Add(100 * time.Millisecond)
				for _, m := range c.mix {
					s.Add(m.key, m.n, now)
					for range m.refused {
						s.Refused(m.key, now)
					}
				}
			}
			for key, want := range c.over {
				if v := s.Over(key, now); v.Over != want {
					t.Errorf("%s: %+v, want over %v", key, v, want)
				}
			}
		})
	}
}

// TestOverVerdict: the share, the fair share and the rate a refusal
// reports, and what decay does to a key that stopped.
func TestOverVerdict(t *testing.T) {
	s := fairshare.New(time.Second, 1.5, 100)
	now := t0
	for range 200 { // 20 s: the counts are steady
		now = now.Add(100 * time.Millisecond)
		s.Add("flood", 300, now) // 3,000 a second
		s.Add("trickle", 20, now)
	}
	v := s.Over("flood", now)
	if !v.Over || v.Keys != 2 || v.Fair != 0.5 || math.Abs(v.Share-300.0/320) > 0.01 {
		t.Errorf("flood: %+v", v)
	}
	if math.Abs(v.Rate-3000) > 3000*0.05 {
		t.Errorf("flood rate %.0f, want about 3,000 a second", v.Rate)
	}
	// The flood stops (it is refused): its count decays while the trickle
	// goes on, and after a few half-lives it is no longer over.
	var back time.Duration
	for i := range 100 {
		now = now.Add(100 * time.Millisecond)
		s.Add("trickle", 20, now)
		if !s.Over("flood", now).Over {
			back = time.Duration(i+1) * 100 * time.Millisecond
			break
		}
	}
	if back == 0 || back > 5*time.Second {
		t.Errorf("the flood, stopped, is over its share for %s, want a few half-lives", back)
	}
	// Long after, it no longer counts as sending: the trickle is alone.
	now = now.Add(time.Minute)
	s.Add("trickle", 20, now)
	if v := s.Over("trickle", now); v.Keys != 1 || v.Over {
		t.Errorf("trickle alone a minute later: %+v", v)
	}
	// A clock that steps back counts at the last instant and panics not.
	s.Add("flood", 5, now.Add(-time.Hour))
	_ = s.Over("flood", now.Add(-time.Hour))
}

func TestSharesAreBounded(t *testing.T) {
	s := fairshare.New(time.Second, 1.5, 0)
	for i := range fairshare.MaxKeys + 10 {
		s.Add(string(rune(i)), 1, t0)
	}
	// Past the cap at once: half were forgotten, and the new keys count.
	s.Add("last", 1000, t0)
	if v := s.Over("last", t0); v.Keys > fairshare.MaxKeys || v.Keys < 2 || v.Share <= 0 {
		t.Errorf("after a flood of keys: %+v", v)
	}
}

func TestQuantile(t *testing.T) {
	buckets := []float64{math.Inf(-1), 0, 0.001, 0.002, 0.004, 0.008, math.Inf(1)}
	for _, c := range []struct {
		name          string
		before, after []uint64
		q             float64
		want          time.Duration
	}{
		{"idle: too few samples", []uint64{0, 0, 0, 0, 0, 0}, []uint64{0, 10, 0, 0, 0, 0}, 0.99, 0},
		{"all immediate", []uint64{0, 0, 0, 0, 0, 0}, []uint64{0, 1000, 0, 0, 0, 0}, 0.99, 0},
		{"1 % waited 8 ms or more", []uint64{0, 0, 0, 0, 0, 0}, []uint64{0, 990, 0, 0, 0, 10}, 0.99, 0},
		{"2 % waited 8 ms or more", []uint64{0, 0, 0, 0, 0, 0}, []uint64{0, 980, 0, 0, 0, 20}, 0.99, 8 * time.Millisecond},
		{"only what counted since before", []uint64{0, 0, 0, 0, 0, 500}, []uint64{0, 1000, 0, 0, 0, 500}, 0.99, 0},
		{"the median of a spread", []uint64{5, 5, 5, 5, 5, 5}, []uint64{5, 105, 105, 305, 105, 5}, 0.5, 2 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fairshare.Quantile(buckets, c.before, c.after, c.q); got != c.want {
				t.Errorf("Quantile = %s, want %s", got, c.want)
			}
		})
	}
}

// TestPace: a key over its share gets one request of its usual batch per
// slot, at margin times its fair share of the events accepted lately (or
// minRate, the higher), reserved only within the hold; a key never seen
// is not held.
func TestPace(t *testing.T) {
	for _, c := range []struct {
		name    string
		minRate float64
		// spacing is the time between slots: 100 events at the rate.
		spacing time.Duration
	}{
		// 3,030 events accepted within the instant decay to a rate of
		// 3,030·ln 2/2 s = 1,050/s; 1.5 × ½ of it is 787.5/s.
		{"share of the accepted", 0, paceSpacing(100, 0.75*3030*math.Ln2/2)},
		{"min rate", 1000, 100 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := fairshare.New(2*time.Second, 1.5, c.minRate)
			for range 30 {
				s.Add("flood", 100, t0)
				s.Add("trickle", 1, t0)
			}
			for range 5 {
				s.Refused("flood", t0) // asked for, not accepted: no pace
			}
			v := s.Over("flood", t0)
			if !v.Over {
				t.Fatalf("flood not over its share: %+v", v)
			}
			if wait, ok := s.Pace("unknown", v, t0, time.Second); !ok || wait != 0 {
				t.Errorf("a key never seen: wait %v ok %v, want let in at once", wait, ok)
			}
			n := 0
			for ; ; n++ {
				wait, ok := s.Pace("flood", v, t0, time.Second)
				want := time.Duration(n) * c.spacing
				if d := wait - want; d < -time.Millisecond || d > time.Millisecond {
					t.Fatalf("slot %d is %v on, want %v", n, wait, want)
				}
				if !ok {
					if wait <= time.Second {
						t.Fatalf("slot %d, %v on, refused within the hold", n, wait)
					}
					break
				}
			}
			if want := int(time.Second/c.spacing) + 1; n != want {
				t.Errorf("%d slots reserved within the hold of 1s, want %d", n, want)
			}
			// Refused, nothing was reserved: later, the same slot is free.
			later := t0.Add(time.Duration(n) * c.spacing)
			if wait, ok := s.Pace("flood", v, later, 0); !ok || wait != 0 {
				t.Errorf("at its slot: wait %v ok %v, want let in at once", wait, ok)
			}
		})
	}
}

// paceSpacing is the time between slots of n events at rate a second.
func paceSpacing(n, rate float64) time.Duration {
	return time.Duration(n / rate * float64(time.Second))
}
