package journeys

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestThompson: the draw picks the arm that converts better almost always
// once the evidence is clear, and splits about evenly between arms that
// look the same; skipped arms are never picked.
func TestThompson(t *testing.T) {
	d := newDraws(rand.NewPCG(1, 2))
	count := func(arms []Arm, skip func(int) bool) []int {
		n := make([]int, len(arms))
		for range 2000 {
			n[d.thompson(arms, skip)]++
		}
		return n
	}
	none := func(int) bool { return false }
	clear := count([]Arm{{Name: "a", Assigned: 1000, Converted: 50}, {Name: "b", Assigned: 1000, Converted: 80}}, none)
	if clear[1] < 1980 {
		t.Errorf("5%% against 8%% on 1000 each: b drawn %d of 2000", clear[1])
	}
	same := count([]Arm{{Name: "a", Assigned: 500, Converted: 50}, {Name: "b", Assigned: 500, Converted: 50}}, none)
	if same[0] < 800 || same[0] > 1200 {
		t.Errorf("equal arms drawn %v", same)
	}
	skip := count([]Arm{{Name: "off", Assigned: 1000, Converted: 900}, {Name: "a"}, {Name: "b"}}, func(i int) bool { return i == 0 })
	if skip[0] != 0 || skip[1] < 800 || skip[2] < 800 {
		t.Errorf("with the first skipped: %v", skip)
	}
}

// adaptiveSplit is splitJourney with adaptive allocation.
var adaptiveSplit = strings.Replace(splitJourney, "      experiment: reminder_timing\n", "      experiment: reminder_timing\n      allocation: adaptive\n", 1)

// splitRun sends people through the cart journey's split one after the
// other; a person converts (an Order Completed at once) with their arm's
// rate, drawn from a seeded source. It returns each person's arm, in
// order.
func splitRun(t *testing.T, journey string, people int, rates map[string]float64) (*harness, []string, []string) {
	t.Helper()
	h := openHarness(t, openPolicy, map[string]string{"cart.yaml": journey}, true)
	s := h.engine.Set().Journey("cart").Step("timing")
	buys := rand.New(rand.NewPCG(7, 7))
	var arms, pids []string
	for i := range people {
		who := fmt.Sprintf("p%04d", i)
		h.clock.Advance(time.Minute)
		pid := h.track(who, "Product Added", nil)
		v := h.variantOf(pid)
		// The control is the hash's, whatever the allocation.
		if control := pick(s.Variants, roll(pid, "cart", "reminder_timing")).Control; control != (v == "control") {
			t.Fatalf("%s in %q; the hash puts them in the control: %v", who, v, control)
		}
		if buys.Float64() < rates[v] {
			h.track(who, "Order Completed", nil)
		}
		arms, pids = append(arms, v), append(pids, pid)
	}
	return h, arms, pids
}

// share is the part of the non-control people in arms that are in arm.
func share(arms []string, arm string) float64 {
	n, in := 0, 0
	for _, a := range arms {
		if a == "control" {
			continue
		}
		n++
		if a == arm {
			in++
		}
	}
	return float64(in) / float64(n)
}

// TestAdaptiveSplit: with one arm clearly better, adaptive allocation moves
// the people who are not in the control towards it, while the control
// keeps its share (the same people as with a fixed split); a person keeps
// their arm when they come back; the same seed gives the same arms.
func TestAdaptiveSplit(t *testing.T) {
	const people = 400
	rates := map[string]float64{"at_once": 0.05, "later": 0.40, "control": 0.05}

	_, fixed, _ := splitRun(t, splitJourney, people, rates)
	if s := share(fixed[people/2:], "later"); s < 0.35 || s > 0.65 {
		t.Errorf("fixed allocation: later got %.2f of the second half, want about half", s)
	}

	h, adaptive, pids := splitRun(t, adaptiveSplit, people, rates)
	if s := share(adaptive[people/2:], "later"); s < 0.85 {
		t.Errorf("adaptive allocation: later got %.2f of the second half, want most", s)
	}
	// The control is exactly the fixed split's (the same profile ids,
	// the same hash): its share does not move.
	controls := 0
	for i := range adaptive {
		if (adaptive[i] == "control") != (fixed[i] == "control") {
			t.Fatalf("person %d: %s with adaptive, %s with fixed", i, adaptive[i], fixed[i])
		}
		if adaptive[i] == "control" {
			controls++
		}
	}
	if controls < people*5/100 || controls > people*15/100 {
		t.Errorf("%d of %d in the control, want about 10%%", controls, people)
	}
	res := h.results("cart")["reminder_timing"]
	if res.Allocation != AllocAdaptive || arm(res, "control").Assigned != int64(controls) ||
		arm(res, "later").Assigned+arm(res, "at_once").Assigned+int64(controls) != people {
		t.Errorf("results = %+v", res)
	}

	// Sticky: the early people, many of them in at_once while the arms
	// looked alike, come back to the same arm.
	h.fireUntil(h.clock.Now().Add(time.Hour))
	for i, pid := range pids[:40] {
		h.track(fmt.Sprintf("p%04d", i), "Product Added", nil)
		if v := h.variantOf(pid); v != adaptive[i] {
			t.Errorf("person %d: %s, then %s", i, adaptive[i], v)
		}
	}
	h.fireUntil(h.clock.Now().Add(time.Hour))
	for i, pid := range pids[:40] {
		for _, e := range h.actions(ActExit, pid) {
			if dm(e)["variant"] != adaptive[i] {
				t.Errorf("person %d assigned %s exited in %v", i, adaptive[i], dm(e)["variant"])
			}
		}
	}

	// Deterministic: the same seed, the same people, the same arms.
	_, again, _ := splitRun(t, adaptiveSplit, people, rates)
	if strings.Join(again, ",") != strings.Join(adaptive, ",") {
		t.Error("a second run with the same seed drew other arms")
	}
}

// TestAdaptiveParse: an adaptive split needs a goal and two arms besides
// the control.
func TestAdaptiveParse(t *testing.T) {
	env, known := parseEnv(t)
	if j, err := Parse("j.yaml", []byte(adaptiveSplit), env, known); err != nil || j.Step("timing").Allocation != AllocAdaptive {
		t.Fatalf("Parse: %v", err)
	}
	one := strings.Replace(adaptiveSplit, "        - {name: later, percent: 45, next: idle}\n", "", 1)
	one = strings.Replace(one, "at_once, percent: 45", "at_once, percent: 90", 1)
	_, err := Parse("j.yaml", []byte(one), env, known)
	if want := "step timing: split.allocation: adaptive needs two or more arms besides the control, got 1"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("one arm and a control: %v, want %q", err, want)
	}
}
