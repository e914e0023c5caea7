package journeys

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// routedJourney sends VIPs one mail and everyone else another, after
// waiting up to an hour for a checkout.
const routedJourney = `
id: routed
trigger:
  event: Product Added
entry:
  reentry: true
steps:
  - id: route
    branch:
      - when: has(profile.traits.vip) && profile.traits.vip == true
        next: vip_mail
      - else: wait_checkout
  - id: wait_checkout
    wait_for:
      event: Checkout Started
      timeout: 1h
      on_event: done
      on_timeout: nudge
  - id: nudge
    send: {channel: email, template: nudge}
  - id: done
    exit: true
  - id: vip_mail
    send: {channel: email, template: vip}
`

const historyPolicy = `
policies:
  timezone: UTC
  consent_required: [email]
  quiet_hours: {start: "21:00", end: "09:00"}
  frequency_caps:
    - {channel: email, max: 1, per: 24h}
`

func (h *harness) history(pid string) []HistoryEntry {
	h.t.Helper()
	got, err := h.engine.History(pid, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return got
}

// find returns the newest entry of an action at a step.
func find(hs []HistoryEntry, action, step string) *HistoryEntry {
	for i := range hs {
		if hs[i].Action == action && hs[i].Step == step {
			return &hs[i]
		}
	}
	return nil
}

// TestHistorySaysWhy: every send says which policies it passed and which
// branch led to it; every suppression names the policy that held it.
func TestHistorySaysWhy(t *testing.T) {
	h := newHarness(t, historyPolicy, map[string]string{"routed.yaml": routedJourney})
	h.identify("ana", map[string]any{"vip": true, "consent": map[string]any{"email": true}})
	ana := h.track("ana", "Product Added", nil)

	hs := h.history(ana)
	if len(hs) < 3 || hs[len(hs)-1].Action != ActEnter {
		t.Fatalf("history %+v, want enter first (oldest last)", hs)
	}
	br := find(hs, DecisionBranch, "route")
	if br == nil || br.Why != "case 1, when has(profile.traits.vip) && profile.traits.vip == true → vip_mail" {
		t.Errorf("branch entry %+v", br)
	}
	send := find(hs, ActSend, "vip_mail")
	if send == nil {
		t.Fatalf("no send in %+v", hs)
	}
	for _, want := range []string{"consent: email granted", "quiet_hours: 10:00 UTC is outside 21:00-09:00", "frequency_cap: 1 email per 24h0m0s, 0 sent before"} {
		if !strings.Contains(send.Why, want) {
			t.Errorf("send's why %q lacks %q", send.Why, want)
		}
	}
	if d, ok := send.Detail.(SendDetail); !ok || d.Template != "vip" || send.Channel != "email" {
		t.Errorf("send detail %#v", send.Detail)
	}

	// The cap holds the second one back.
	h.clock.Advance(time.Minute)
	h.track("ana", "Product Added", nil)
	sup := find(h.history(ana), ActSuppressed, "vip_mail")
	if sup == nil {
		t.Fatal("no suppression after the cap")
	}
	if d := sup.Detail.(SuppressedDetail); d.Reason != "frequency_cap: 1 email per 24h0m0s" {
		t.Errorf("suppression reason %q", d.Reason)
	}

	// Bo has no consent: the wait times out, the nudge is suppressed.
	bo := h.track("bo", "Product Added", nil)
	h.fire(t0.Add(2 * time.Hour))
	hs = h.history(bo)
	if w := find(hs, DecisionWaitFor, "wait_checkout"); w == nil || w.Why != "timed out after 1h: no Checkout Started" {
		t.Errorf("wait_for entry %+v", w)
	}
	if br := find(hs, DecisionBranch, "route"); br == nil || !strings.HasPrefix(br.Why, "case 2, the default → wait_checkout") {
		t.Errorf("bo's branch %+v", br)
	}
	if s := find(hs, ActSuppressed, "nudge"); s == nil || s.Detail.(SuppressedDetail).Reason != "consent: no email consent" {
		t.Errorf("bo's nudge %+v", s)
	}
	if e := find(hs, ActExit, "done"); e == nil || e.Detail.(ExitDetail).Reason != "exit step" {
		t.Errorf("bo's exit %+v", e)
	}
	if got, err := h.engine.History(bo, 2); err != nil || len(got) != 2 || got[0].Action != ActExit {
		t.Errorf("History(bo, 2) = %+v, %v: want the 2 newest, the exit first", got, err)
	}

	// Erasure takes the history with the person, though it ends her
	// waiting instance.
	di := h.track("di", "Product Added", nil)
	if len(h.instances(di)) != 1 || len(h.history(di)) == 0 {
		t.Fatal("di is not waiting, or has no history")
	}
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "di"}, false); err != nil {
		t.Fatal(err)
	}
	if hs := h.history(di); len(hs) != 0 {
		t.Errorf("di's history after erasure: %+v", hs)
	}
	if n := h.keysOf(di); n["profiles"] != 0 {
		t.Errorf("erased di keeps keys %v", n)
	}
}

// TestHistoryBoundedAndMerged: a history keeps its newest entries, and a
// merge moves the merged-away person's to the survivor.
func TestHistoryBoundedAndMerged(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"promo.yaml": policyJourney})
	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Product Added"}).ProfileID
	for range historyKeep {
		h.clock.Advance(time.Minute)
		h.track("ana", "Product Added", nil)
	}
	ana := h.track("ana", "Product Added", map[string]any{"last": true})
	hs := h.history(ana)
	if len(hs) != historyKeep {
		t.Fatalf("history of %d entries, want the newest %d", len(hs), historyKeep)
	}
	if !hs[0].At.Equal(h.clock.Now()) {
		t.Errorf("newest entry at %s, want %s", hs[0].At, h.clock.Now())
	}
	h.clock.Advance(time.Minute)
	res := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	survivor := res.ProfileID
	if survivor != anon {
		t.Fatalf("merge kept %s, want the older %s", survivor, anon)
	}
	hs = h.history(survivor)
	if len(hs) != historyKeep || !hs[0].At.Equal(t0.Add(time.Duration(historyKeep)*time.Minute)) {
		t.Errorf("survivor's history: %d entries, newest %s", len(hs), hs[0].At)
	}
	if left := h.history(ana); len(left) != 0 {
		t.Errorf("merged-away history left behind: %d entries", len(left))
	}
}

// TestPeriodCounts: the hourly counters sum over the hours asked for, by
// reason and by edge, and Prune drops the old hours.
func TestPeriodCounts(t *testing.T) {
	h := newHarness(t, historyPolicy, map[string]string{"routed.yaml": routedJourney})
	h.identify("ana", map[string]any{"vip": true, "consent": map[string]any{"email": true}})
	h.track("ana", "Product Added", nil)
	h.clock.Advance(time.Minute)
	h.track("ana", "Product Added", nil)    // capped
	h.track("bo", "Product Added", nil)     // waits
	h.fire(t0.Add(time.Hour + time.Minute)) // bo's wait times out
	h.clock.Set(t0.Add(3 * time.Hour))
	h.track("cy", "Product Added", nil)
	h.track("cy", "Checkout Started", nil)

	first, err := h.engine.Period("routed", t0, t0.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int64{
		"":              {"entered": 3},
		"route":         {"entered": 3, "from:": 3},
		"vip_mail":      {"entered": 2, "from:route": 2, "sent": 1, "suppressed": 1, "suppressed:frequency_cap: 1 email per 24h0m0s": 1, "exited": 2, "exited:completed": 2},
		"wait_checkout": {"entered": 1, "from:route": 1},
	}
	for step, counters := range want {
		for what, n := range counters {
			if got := first[step][what]; got != n {
				t.Errorf("first hour: %q %q = %d, want %d", step, what, got, n)
			}
		}
	}
	if n := first["wait_checkout"]["waiting"]; n != 0 {
		t.Errorf("a gauge among the hourly counters: waiting %d", n)
	}
	later, err := h.engine.Period("routed", t0.Add(time.Hour), t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// bo's wait timed out at 11:01 (the nudge suppressed: no consent); cy
	// entered and checked out at 13:00.
	if later[""]["entered"] != 1 || later["done"]["from:wait_checkout"] != 1 || later["done"]["from:nudge"] != 1 || later["done"]["exited:exit step"] != 2 ||
		later["nudge"]["suppressed:consent: no email consent"] != 1 || later["nudge"]["from:wait_checkout"] != 1 {
		t.Errorf("later hours: %v", later)
	}
	if p, _ := h.engine.Period("routed", t0.Add(2*time.Hour), t0.Add(2*time.Hour)); len(p) != 0 {
		t.Errorf("an hour when nothing happened: %v", p)
	}
	st, err := h.engine.Prune(context.Background(), t0.Add(DefaultRetention+2*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Hours == 0 {
		t.Error("Prune dropped no hour")
	}
	all, err := h.engine.Period("routed", t0.Add(-time.Hour), t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if all[""]["entered"] != 1 || all["route"]["entered"] != 1 {
		t.Errorf("after pruning the hours before 12:00: %v, want only cy's", all)
	}
	if n := h.count("routed", "", "entered"); n != 4 {
		t.Errorf("the cumulative counter after pruning: %d, want 4", n)
	}
}

func TestStepEdges(t *testing.T) {
	h := newHarness(t, historyPolicy, map[string]string{"routed.yaml": routedJourney})
	j := h.engine.Set().Journey("routed")
	got := map[string]string{}
	for _, s := range j.Steps {
		var parts []string
		for _, e := range s.Edges() {
			parts = append(parts, e.Label+"→"+e.To)
		}
		got[s.ID] = s.Summary() + ": " + strings.Join(parts, " | ")
	}
	want := map[string]string{
		"route":         "branch, 2 cases: has(profile.traits.vip) && profile.traits.vip == true→vip_mail | else→wait_checkout",
		"wait_checkout": "wait for Checkout Started, 1h: on Checkout Started→done | after 1h→nudge",
		"nudge":         "email nudge: →done",
		"done":          "exit: ",
		"vip_mail":      "email vip: →",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
}

// BenchmarkPeriod90Days: a journey page's read of 90 days of hourly
// counters of a busy ten-step journey (every step, six counters, every
// hour: 129,600 counters in 2,160 tallies), beside nine other such
// journeys.
func BenchmarkPeriod90Days(b *testing.B) {
	h := openHarness(b, openPolicy, nil, true)
	const hours, steps = 90 * 24, 10
	start := t0.Add(-hours * time.Hour)
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketHourly)
		for _, j := range []string{"a", "b", "c", "d", "e", "routed", "v", "w", "x", "y"} {
			for hr := range hours {
				t := &tally{}
				for s := range steps {
					for _, what := range []string{"entered", "sent", "suppressed", "suppressed:consent: no email consent", "exited", "from:x"} {
						t.add(counterName(nil, fmt.Sprintf("step_%d", s), what), 1)
					}
				}
				if err := bk.Put(hourKey(nil, j, start.Add(time.Duration(hr)*time.Hour).Unix()), t.encode()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		p, err := h.engine.Period("routed", start, t0)
		if err != nil || p["step_3"]["sent"] != hours {
			b.Fatalf("period: %v, %v", p["step_3"], err)
		}
	}
}
