package journeys

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"cartera/profiles"
)

// splitJourney tests cart reminder timing: at once, after 30 minutes, or
// nothing (the control).
const splitJourney = `
id: cart
trigger:
  event: Product Added
entry:
  reentry: true
goal:
  event: Order Completed
  within: 3d
steps:
  - id: timing
    split:
      experiment: reminder_timing
      variants:
        - {name: at_once, percent: 45, next: remind}
        - {name: later, percent: 45, next: idle}
        - {name: control, percent: 10, control: true}
  - id: idle
    wait: 30m
  - id: remind
    send: {channel: email, template: cart_reminder}
`

// TestSplitParse: a split is a list of variants or a mapping with an
// experiment name; mistakes say what and where.
func TestSplitParse(t *testing.T) {
	env, known := parseEnv(t)
	head := "id: j\ntrigger: {event: Product Added}\nsteps:\n  - id: s\n    split:\n"
	tail := "  - id: a\n    exit: true\n  - id: b\n    exit: true\n"
	tests := []struct {
		name, split, want string
	}{
		{"list", "      - {name: one, percent: 50, next: a}\n      - {name: two, percent: 50, next: b}\n", ""},
		{"mapping", "      experiment: colour_test\n      variants:\n        - {name: one, percent: 90, next: a}\n        - {name: off, percent: 10, control: true, next: b}\n", ""},
		{"one variant", "      - {name: one, percent: 100, next: a}\n", "6:7: split: want two or more variants, got 1"},
		{"two controls", "      - {name: one, percent: 50, control: true}\n      - {name: two, percent: 50, control: true}\n", "split: want at most one control variant, got 2"},
		{"same name", "      - {name: one, percent: 50, next: a}\n      - {name: one, percent: 50, next: b}\n", `7:9: split variant "one" declared twice`},
		{"no next", "      - {name: one, percent: 50, next: a}\n      - {name: two, percent: 50}\n", "7:9: split variant two: next is required (only a control may end the journey)"},
		{"zero percent", "      - {name: one, percent: 100, next: a}\n      - {name: two, percent: 0, next: b}\n", "split variant two: percent must be at least 1, got 0"},
		{"bad experiment", "      experiment: Colour Test\n      variants:\n        - {name: one, percent: 50, next: a}\n        - {name: two, percent: 50, next: b}\n", `6:19: split.experiment: want lower_snake_case, got "Colour Test"`},
		{"unknown field", "      experiment: x\n      colour: red\n      variants:\n        - {name: one, percent: 50, next: a}\n        - {name: two, percent: 50, next: b}\n", `7:7: split: unknown field "colour": want experiment, allocation or variants`},
		{"bad allocation", "      experiment: x\n      allocation: magic\n      variants:\n        - {name: one, percent: 50, next: a}\n        - {name: two, percent: 50, next: b}\n", `7:19: split.allocation: want fixed or adaptive, got "magic"`},
		{"adaptive without a goal", "      allocation: adaptive\n      variants:\n        - {name: one, percent: 50, next: a}\n        - {name: two, percent: 50, next: b}\n", `4:5: step s: split.allocation: adaptive needs the journey's goal`},
		{"no variants", "      experiment: x\n", "split: variants are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Parse("j.yaml", []byte(head+tt.split+tail), env, known)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if s := j.Step("s"); len(s.Variants) != 2 {
					t.Errorf("variants = %+v", s.Variants)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	j, err := Parse("j.yaml", []byte(head+tests[1].split+tail), env, known)
	if err != nil {
		t.Fatal(err)
	}
	if s := j.Step("s"); s.ExperimentName() != "colour_test" || !s.Variants[1].Control {
		t.Errorf("step = %+v, want experiment colour_test with a control", s)
	}
}

// variantOf is the variant in the profile's assignment to the cart
// journey's reminder_timing experiment.
func (h *harness) variantOf(pid string) string {
	h.t.Helper()
	as, err := h.engine.Assignments(pid)
	if err != nil {
		h.t.Fatalf("assignments of %s: %v", pid, err)
	}
	for _, a := range as {
		if a.Experiment == "reminder_timing" && a.MergedFrom == "" {
			return a.Variant
		}
	}
	return ""
}

// results returns the cart journey's experiments by name.
func (h *harness) results(journey string) map[string]ExperimentResult {
	h.t.Helper()
	rs, err := h.engine.Experiments(h.engine.Set().Journey(journey))
	if err != nil {
		h.t.Fatalf("experiments of %s: %v", journey, err)
	}
	out := map[string]ExperimentResult{}
	for _, r := range rs {
		out[r.Name] = r
	}
	return out
}

func arm(r ExperimentResult, name string) VariantResult {
	for _, v := range r.Variants {
		if v.Name == name {
			return v
		}
	}
	return VariantResult{}
}

// TestSplitSticky: a person's arm is drawn once from a hash of profile,
// journey and experiment, and stays theirs across re-entries and
// restarts; the arm shows on the exit (and goal) details; a control gets
// nothing; each person is counted once.
func TestSplitSticky(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney})
	byVariant := map[string]int{}
	pids := map[string]string{}
	for i := range 60 {
		who := fmt.Sprintf("p%02d", i)
		pid := h.track(who, "Product Added", nil)
		pids[who] = pid
		v := h.variantOf(pid)
		want := pick(h.engine.Set().Journey("cart").Step("timing").Variants, roll(pid, "cart", "reminder_timing")).Name
		if v != want {
			t.Fatalf("%s: assigned %q, the hash says %q", who, v, want)
		}
		byVariant[v]++
	}
	if len(byVariant) != 3 {
		t.Fatalf("60 people fell in %v, want all three arms used", byVariant)
	}
	h.fireUntil(t0.Add(time.Hour))
	h.drain()
	check := func(when string) {
		t.Helper()
		for who, pid := range pids {
			first := h.variantOf(pid)
			sends := len(h.actions(ActSend, pid))
			exits := h.actions(ActExit, pid)
			if len(exits) == 0 {
				t.Fatalf("%s %s: no exit", when, who)
			}
			for _, e := range exits {
				if dm(e)["variant"] != first {
					t.Errorf("%s %s: exit variant %v, assigned %q", when, who, dm(e)["variant"], first)
				}
			}
			if first == "control" && sends != 0 || first != "control" && sends != len(exits) {
				t.Errorf("%s %s (%s): %d sends for %d runs", when, who, first, sends, len(exits))
			}
		}
	}
	check("first entry")
	// Again, after a restart: every re-entry takes the same arm, and the
	// people are not counted twice.
	h.restart()
	for who := range pids {
		h.track(who, "Product Added", nil)
	}
	h.fireUntil(t0.Add(2 * time.Hour))
	check("re-entry after restart")
	res := h.results("cart")["reminder_timing"]
	for v, n := range byVariant {
		if got := arm(res, v).Assigned; got != int64(n) {
			t.Errorf("%s assigned = %d, want %d people", v, got, n)
		}
	}
	if h.count("cart", "timing", "variant:control") != int64(2*byVariant["control"]) {
		t.Errorf("step counter variant:control = %d, want %d runs", h.count("cart", "timing", "variant:control"), 2*byVariant["control"])
	}
}

// TestSplitConversions: a person converts once, when the goal event comes
// within the window of their assignment, whether their instance lives or
// not: the control's instance ended at once and it is measured the same.
// The goal's revenue counts.
func TestSplitConversions(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney})
	want := map[string]*Arm{}
	var lateBuyers []string
	for i := range 80 {
		who := fmt.Sprintf("c%02d", i)
		pid := h.track(who, "Product Added", nil)
		v := h.variantOf(pid)
		if want[v] == nil {
			want[v] = &Arm{}
		}
		want[v].Assigned++
		buys := i % 4
		if v == "control" && want[v].Assigned == 1 {
			buys = 0 // one control person at least converts
		}
		switch buys {
		case 0: // buys twice within the window: one conversion, first revenue
			h.track(who, "Order Completed", map[string]any{"revenue": 10.5})
			h.track(who, "Order Completed", map[string]any{"revenue": 99})
			want[v].Converted++
			want[v].RevenueCents += 1050
		case 1: // buys after the window: not a conversion
			lateBuyers = append(lateBuyers, who)
		}
	}
	h.fireUntil(t0.Add(4 * 24 * time.Hour))
	for _, who := range lateBuyers {
		h.track(who, "Order Completed", map[string]any{"revenue": 5})
	}
	if want["control"] == nil || want["control"].Converted == 0 {
		t.Fatalf("no converted control person in %v: pick other names", want)
	}
	res := h.results("cart")["reminder_timing"]
	if res.Kind != "split" || res.Step != "timing" || res.Window != "3d" {
		t.Errorf("result = %+v", res)
	}
	for v, w := range want {
		got := arm(res, v)
		if got.Assigned != w.Assigned || got.Converted != w.Converted || got.Revenue != float64(w.RevenueCents)/100 {
			t.Errorf("%s: assigned %d converted %d revenue %.2f, want %d %d %.2f", v, got.Assigned, got.Converted, got.Revenue, w.Assigned, w.Converted, float64(w.RevenueCents)/100)
		}
	}
	if c := arm(res, "control"); c.Uplift != nil || !c.Control {
		t.Errorf("control = %+v, want the baseline", c)
	}
	if a := arm(res, "at_once"); a.Uplift == nil || a.ProbBeatsBaseline == nil || a.Verdict == "" {
		t.Errorf("at_once = %+v, want compared with the control", a)
	}
	// The goal detail names the arm of a live instance that converted.
	for _, g := range h.actions(ActGoal, "") {
		if dm(g)["variant"] == nil {
			t.Errorf("goal %+v has no variant", g)
		}
	}
}

// TestSplitMerge: when two assigned profiles merge, the survivor's arm is
// the person's; the other is kept in the survivor's ledger and leaves the
// counts, so the person is counted once.
func TestSplitMerge(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney})
	var anon, known, anonID string // two profiles of one person
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("no two profiles in different arms")
		}
		id := fmt.Sprintf("anon-%d", i)
		a := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: id, Event: "Product Added"}).ProfileID
		if known == "" {
			known = h.track("ana", "Product Added", nil)
		}
		if h.variantOf(a) != h.variantOf(known) {
			anon, anonID = a, id
			break
		}
	}
	// The loser converted: whichever is merged away (the younger) takes
	// its conversion out of the counts.
	h.track("ana", "Order Completed", map[string]any{"revenue": 20})
	h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: anonID, Event: "Order Completed", Properties: map[string]any{"revenue": 20}})
	before := h.results("cart")["reminder_timing"]
	arms := map[string]string{anon: h.variantOf(anon), known: h.variantOf(known)}
	h.clock.Advance(time.Minute)
	res := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: anonID})
	if len(res.Merged) != 1 {
		t.Fatalf("merge result = %+v", res)
	}
	survivor, loser := res.ProfileID, res.Merged[0]
	survivorArm, loserArm := arms[survivor], arms[loser]
	if v := h.variantOf(survivor); v != survivorArm {
		t.Errorf("after the merge the person is in %q, want the survivor's %q", v, survivorArm)
	}
	as, err := h.engine.Assignments(survivor)
	if err != nil {
		t.Fatal(err)
	}
	var ledger []Assignment
	for _, a := range as {
		if a.MergedFrom != "" {
			ledger = append(ledger, a)
		}
	}
	if len(ledger) != 1 || ledger[0].MergedFrom != loser || ledger[0].Variant != loserArm || !ledger[0].Converted {
		t.Errorf("ledger = %+v, want %s's converted %s", ledger, loser, loserArm)
	}
	after := h.results("cart")["reminder_timing"]
	if a, b := arm(after, loserArm), arm(before, loserArm); a.Assigned != b.Assigned-1 || a.Converted != b.Converted-1 || a.Revenue != b.Revenue-20 {
		t.Errorf("%s after the merge = %+v, before %+v: want one person, conversion and 20 less", loserArm, a, b)
	}
	if a, b := arm(after, survivorArm), arm(before, survivorArm); a.Assigned != b.Assigned {
		t.Errorf("%s after the merge = %d assigned, before %d", survivorArm, a.Assigned, b.Assigned)
	}
	// Re-entering: the survivor's arm, not counted again.
	// (A live instance moved from the merged-away profile finishes in the
	// arm it took.)
	h.fireUntil(h.clock.Now().Add(time.Hour))
	h.track("ana", "Product Added", nil)
	h.fireUntil(h.clock.Now().Add(time.Hour))
	exits := h.actions(ActExit, survivor)
	if len(exits) == 0 || dm(exits[len(exits)-1])["variant"] != survivorArm {
		t.Errorf("re-entry exits = %v, want in %s; all: %s", describe(exits), survivorArm, describe(h.actions("", "")))
	}
	if got := arm(h.results("cart")["reminder_timing"], survivorArm).Assigned; got != arm(after, survivorArm).Assigned {
		t.Errorf("re-entry counted the person again: %d", got)
	}
}

// holdoutPolicy holds a fifth of the people out of marketing journeys.
const holdoutPolicy = openPolicy + `  holdout: {percent: 20, name: global}
`

// TestHoldout: the global holdout keeps a fixed, sticky share of people
// out of every marketing journey (no enter), not out of transactional
// ones; they are counted per journey, and their conversions too, so the
// journey's lift shows against them.
func TestHoldout(t *testing.T) {
	receipt := "id: receipt\ncategory: transactional\ntrigger:\n  event: Product Added\nsteps:\n  - id: mail\n    send: {channel: email, template: receipt}\n"
	h := openHarness(t, holdoutPolicy, map[string]string{"reminder.yaml": strings.Replace(reminderJourney, "exit_when:", "goal:\n  event: Order Completed\nexit_when:", 1), "receipt.yaml": receipt}, true)
	held := 0
	const people = 600
	for i := range people {
		who := fmt.Sprintf("h%03d", i)
		pid := h.track(who, "Product Added", nil)
		out := roll(pid, "", "global") < 2000
		entered := map[string]bool{}
		for _, a := range h.actions(ActEnter, pid) {
			entered[a.Journey] = true
		}
		if !entered["receipt"] {
			t.Fatalf("%s: the transactional journey did not run", who)
		}
		if entered["reminder"] == out {
			t.Fatalf("%s: held out %v, entered the marketing journey %v", who, out, entered["reminder"])
		}
		if out {
			held++
			// Sticky: a second try is held out too, and not counted again.
			h.track(who, "Product Added", nil)
			h.track(who, "Order Completed", nil)
		}
	}
	if held < people/10 || held > people*3/10 {
		t.Errorf("held out %d of %d, want about 20%%", held, people)
	}
	if n := h.count("reminder", "", "holdout"); n != int64(held) {
		t.Errorf("holdout counter = %d, want %d", n, held)
	}
	if n := h.count("receipt", "", "holdout"); n != 0 {
		t.Errorf("transactional holdout counter = %d", n)
	}
	res, ok := h.results("reminder")["global"]
	if !ok || res.Kind != "holdout" {
		t.Fatalf("results = %+v, want the global holdout", h.results("reminder"))
	}
	ho, tr := arm(res, HoldoutVariant), arm(res, TreatedVariant)
	if ho.Assigned != int64(held) || ho.Converted != int64(held) || tr.Assigned != int64(people-held) || tr.Converted != 0 || !ho.Control {
		t.Errorf("holdout %+v, treated %+v", ho, tr)
	}
	if tr.Verdict != VerdictWorse {
		t.Errorf("treated verdict = %q: nobody treated bought, everyone held out did", tr.Verdict)
	}
	if _, ok := h.results("receipt")["global"]; ok {
		t.Error("a transactional journey has a holdout")
	}
}

// TestHoldoutParse: the holdout's fields are checked.
func TestHoldoutParse(t *testing.T) {
	env, _ := parseEnv(t)
	for src, want := range map[string]string{
		"policies:\n  holdout: {percent: 2.5}\n":                "",
		"policies:\n  holdout: {percent: 0}\n":                  "2:22: holdout.percent: want a number above 0 and at most 50",
		"policies:\n  holdout: {percent: 80, name: g}\n":        "holdout.percent: want a number above 0 and at most 50",
		"policies:\n  holdout: {name: global}\n":                "holdout: percent is required",
		"policies:\n  holdout: {percent: 5, name: Global}\n":    `holdout.name: want lower_snake_case, got "Global"`,
		"policies:\n  holdout: {percent: 5, share: 1}\n":        `holdout: unknown field "share": want percent or name`,
		"policies:\n  holdout: {percent: 5, name: programme}\n": "",
	} {
		pol, err := ParsePolicy("p.yaml", []byte(src), env)
		if want == "" {
			if err != nil || pol.Holdout == nil || pol.Holdout.Basis == 0 {
				t.Errorf("%q: %v, %+v", src, err, pol)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
	pol, _ := ParsePolicy("p.yaml", []byte("policies:\n  holdout: {percent: 2.5}\n"), env)
	if *pol.Holdout != (Holdout{Name: "global", Basis: 250}) {
		t.Errorf("holdout = %+v", pol.Holdout)
	}
}
