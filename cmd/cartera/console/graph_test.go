package console

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"cartera/journeys"
)

// cartSteps are the example cart journey's steps, with a loop added
// (hold → retarget) to check back edges.
func cartSteps() []Step {
	e := func(to, label string) journeys.Edge { return journeys.Edge{To: to, Label: label} }
	return []Step{
		{ID: "priority", Kind: "branch", Edges: []journeys.Edge{e("reminder", `in_audience("priority_recovery")`), e("timing", "else")}},
		{ID: "timing", Kind: "split", Edges: []journeys.Edge{e("reminder", "at_once 45%"), e("idle", "half_hour 45%"), e("done", "control 10% (control)")}},
		{ID: "idle", Kind: "wait", Edges: []journeys.Edge{e("reminder", "after 30m")}},
		{ID: "reminder", Kind: "send", Summary: "email cart_reminder", Edges: []journeys.Edge{e("opened", "")}},
		{ID: "opened", Kind: "wait_for", Edges: []journeys.Edge{e("done", "on Email Opened"), e("retarget", "after 24h")}},
		{ID: "retarget", Kind: "audience", Edges: []journeys.Edge{e("hold", "")}},
		{ID: "hold", Kind: "wait", Edges: []journeys.Edge{e("retarget", "after 7d"), e("", "")}},
		{ID: "done", Kind: "exit"},
	}
}

func TestLayers(t *testing.T) {
	layer, back := layers(cartSteps())
	want := map[string]int{"priority": 0, "timing": 1, "idle": 2, "reminder": 3, "opened": 4, "retarget": 5, "hold": 6, "done": 5}
	for id, l := range want {
		if layer[id] != l {
			t.Errorf("layer of %s = %d, want %d", id, layer[id], l)
		}
	}
	if !back[[2]string{"hold", "retarget"}] || len(back) != 1 {
		t.Errorf("back edges %v, want hold→retarget only", back)
	}
}

func TestGraphSVG(t *testing.T) {
	steps := cartSteps()
	steps[4].Counts = journeys.StepCounts{"waiting": 7}
	j := &Journey{ID: "cart<x>", Steps: steps}
	period := map[string]journeys.StepCounts{
		"":         {"converted": 2},
		"priority": {"entered": 10},
		"timing":   {"entered": 8, "from:priority": 8},
		"reminder": {"entered": 9, "from:priority": 2, "from:timing": 4, "from:idle": 3, "sent": 6, "suppressed": 3},
		"done":     {"from:timing": 1, "exited": 1},
		"hold":     {"exited:completed": 4},
	}
	svg := string(graphSVG(j, period))
	for _, want := range []string{
		`<g class="node kind-send" data-step="reminder">`,
		`>in 9 · sent 6 · supp. 3<`,
		`>in 0 · waiting 7<`,
		`>at_once 45% · 4<`,
		`>after 30m · 3<`,
		`>in_audience(&#34;priority_recovery&#34;) · 2<`,
		`data-from="hold" data-to="end"`,
		`>end · goal 2<`,
		`aria-label="steps of journey cart&lt;x&gt;"`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("graph lacks %s", want)
		}
	}
	if n := strings.Count(svg, `<g class="node kind-`); n != len(steps) {
		t.Errorf("%d step boxes, want %d", n, len(steps))
	}
	if n := strings.Count(svg, `<path class="edge"`); n != 13 {
		t.Errorf("%d arrows, want 13 (12 ways out and the exit step's)", n)
	}
	// Every box lies below the boxes that lead to it (but for the loop).
	y := map[string]float64{}
	for _, m := range regexp.MustCompile(`data-step="([a-z_]+)"><a href="#step-[a-z_]+"><rect x="[0-9.]+" y="([0-9.]+)"`).FindAllStringSubmatch(svg, -1) {
		y[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	if !(y["priority"] < y["timing"] && y["timing"] < y["idle"] && y["idle"] < y["reminder"] && y["reminder"] < y["opened"]) {
		t.Errorf("rows: %v", y)
	}
}
