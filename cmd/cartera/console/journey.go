package console

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/journeys"
)

// rangeChoice is a time range the journey page offers.
type rangeChoice struct {
	Key, Label string
	D          time.Duration
}

var rangeChoices = []rangeChoice{
	{"1h", "last hour", time.Hour},
	{"24h", "last day", 24 * time.Hour},
	{"7d", "last 7 days", 7 * 24 * time.Hour},
	{"30d", "last 30 days", 30 * 24 * time.Hour},
	{"90d", "last 90 days", 90 * 24 * time.Hour},
}

const defaultRange = "7d"

// period reads the range of the query: range=KEY, or from and to as dates
// (YYYY-MM-DD, UTC, both days included).
func period(ctx *fiber.Ctx, now time.Time) (key string, from, to time.Time, err error) {
	f, t := strings.TrimSpace(ctx.Query("from")), strings.TrimSpace(ctx.Query("to"))
	if f != "" || t != "" {
		if from, err = time.Parse(time.DateOnly, f); err != nil {
			return "", from, to, fmt.Errorf("from: want a date as 2026-12-01, got %q", f)
		}
		to = now
		if t != "" {
			day, err := time.Parse(time.DateOnly, t)
			if err != nil {
				return "", from, to, fmt.Errorf("to: want a date as 2026-12-06, got %q", t)
			}
			to = day.Add(24*time.Hour - time.Second)
		}
		if to.Before(from) {
			return "", from, to, fmt.Errorf("to (%s) is before from (%s)", t, f)
		}
		return "custom", from, to, nil
	}
	key = ctx.Query("range", defaultRange)
	i := slices.IndexFunc(rangeChoices, func(r rangeChoice) bool { return r.Key == key })
	if i < 0 {
		return "", from, to, fmt.Errorf("range: want one of 1h, 24h, 7d, 30d, 90d, got %q", key)
	}
	return key, now.Add(-rangeChoices[i].D), now, nil
}

type reasonCount struct {
	Reason string
	N      int64
}

// byReason lists the counters prefix:<reason> of a step, most first.
func byReason(c journeys.StepCounts, prefix string) []reasonCount {
	var out []reasonCount
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if r, ok := strings.CutPrefix(k, prefix); ok && c[k] > 0 {
			out = append(out, reasonCount{Reason: Reason(r), N: c[k]})
		}
	}
	slices.SortStableFunc(out, func(a, b reasonCount) int { return int(b.N - a.N) })
	return out
}

type edgeRow struct {
	To, Label string
	N         int64
}

type stepRow struct {
	Step
	Entered, Sent, Suppressed, Delayed, Exited, WaitingNow int64
	SuppressedBy, DelayedBy, ExitedBy                      []reasonCount
	Out                                                    []edgeRow
}

func (c *Console) journey(ctx *fiber.Ctx) error {
	j, err := c.o.Journeys.Journey(ctx.Params("id"))
	if err != nil {
		return err
	}
	if j == nil {
		return c.fail(ctx, fiber.StatusNotFound, "No such journey.")
	}
	now := c.o.Now()
	key, from, to, err := period(ctx, now)
	if err != nil {
		return c.fail(ctx, fiber.StatusBadRequest, err.Error())
	}
	counts, err := c.o.Journeys.Period(j.ID, from, to)
	if err != nil {
		return err
	}
	var rows []stepRow
	for _, s := range j.Steps {
		p := counts[s.ID]
		r := stepRow{Step: s, Entered: p["entered"], Sent: p["sent"], Suppressed: p["suppressed"], Delayed: p["delayed"], Exited: p["exited"],
			WaitingNow: s.Counts["waiting"], SuppressedBy: byReason(p, "suppressed:"), DelayedBy: byReason(p, "delayed:"), ExitedBy: byReason(p, "exited:")}
		for _, e := range s.Edges {
			n := counts[e.To][journeys.CounterFrom+s.ID]
			to := e.To
			if to == "" {
				to, n = "(end)", p["exited:completed"]
			}
			r.Out = append(r.Out, edgeRow{To: to, Label: e.Label, N: n})
		}
		rows = append(rows, r)
	}
	whole := counts[""]
	conv, toGoal := "–", "–"
	if whole["entered"] > 0 {
		conv = fmt.Sprintf("%.1f %%", 100*float64(whole["converted"])/float64(whole["entered"]))
	}
	if whole["converted"] > 0 {
		toGoal = Duration(time.Duration(whole[journeys.CounterGoalSeconds]/whole["converted"]) * time.Second)
	}
	return c.render(ctx, fiber.StatusOK, "journey", "Journey "+j.ID, "journeys", map[string]any{
		"J": j, "Rows": rows, "Graph": graphSVG(j, counts), "Ranges": rangeChoices, "Range": key,
		"From": from.UTC().Truncate(time.Hour), "To": to.UTC(), "FromDay": from.UTC().Format(time.DateOnly), "ToDay": to.UTC().Format(time.DateOnly),
		"InRange": whole["entered"], "Goals": whole["converted"], "Conversion": conv, "TimeToGoal": toGoal,
	})
}
