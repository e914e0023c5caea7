package journeys

import (
	"strings"
	"testing"
	"time"
)

const reviewWithGoal = `
id: review
trigger: {event: Order Delivered}
entry: {reentry: true}
goal:
  event: Order Completed
  within: 14d
steps:
  - id: ask
    send: {channel: email, template: review}
  - id: linger
    wait: 30d
`

// A goal with within counts a conversion only inside the window from the
// entry, and the goal events' revenue is attributed to the journey.
func TestGoalWithinAndRevenue(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"review.yaml": reviewWithGoal})
	ana := h.track("ana", "Order Delivered", nil)
	bea := h.track("bea", "Order Delivered", nil)
	h.clock.Advance(10 * 24 * time.Hour)
	h.track("ana", "Order Completed", map[string]any{"revenue": 49.9})
	h.clock.Advance(5 * 24 * time.Hour) // day 15: past the window
	h.track("bea", "Order Completed", map[string]any{"revenue": 120.0})
	if n := len(h.actions(ActGoal, ana)); n != 1 {
		t.Errorf("Ana bought on day 10: %d goals, want 1", n)
	}
	if n := len(h.actions(ActGoal, bea)); n != 0 {
		t.Errorf("Bea bought on day 15 of a 14-day window: %d goals, want 0", n)
	}
	if got := h.count("review", "", "converted"); got != 1 {
		t.Errorf("converted = %d, want 1", got)
	}
	if got := h.count("review", "", "revenue_cents"); got != 4990 {
		t.Errorf("revenue = %d cents, want 4990 (Ana's order only)", got)
	}
}

func TestGoalWithinParse(t *testing.T) {
	env, known := parseEnv(t)
	for _, tc := range []struct{ src, want string }{
		{"goal: {event: Order Completed, within: 0s}", "goal.within: want a positive duration"},
		{"exit_when: [{event: Order Completed, within: 14d}]", "within is for goal"},
	} {
		src := "id: x\ntrigger: {event: A}\n" + tc.src + "\nsteps:\n  - id: s\n    send: {channel: email, template: t}\n"
		if _, err := Parse("t.yaml", []byte(src), env, known); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.src, err, tc.want)
		}
	}
}
