package console

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"cartera/journeys"
	"cartera/profiles"
)

// timelineRow is one line of a person's timeline: an event, or something
// a journey did or decided, with why.
type timelineRow struct {
	At time.Time
	// Kind is "event" or the journey action or decision (send,
	// suppressed, branch, ...).
	Kind string
	// Journey and Step are set for journey rows.
	Journey, Step string
	// What is a short line: "Sent email cart_reminder".
	What string
	// Why are the reasons, one a line: "Consent: email granted", ...
	Why []string
	// Details is an event's properties as JSON.
	Details string
	Source  string
}

// reasonLabels name the policies and rules a reason's prefix stands for.
var reasonLabels = map[string]string{
	"consent":        "Consent",
	"quiet_hours":    "Quiet hours",
	"frequency_cap":  "Frequency cap",
	"suppression":    "Suppression policy",
	"priority":       "Priority",
	"max_delay":      "Longest delay",
	"goal":           "Goal",
	"no_identifiers": "No identifiers",
	"held":           "Held by another journey",
	"exit_when":      "Exit condition",
	"transactional":  "Transactional",
}

// Reason makes an engine reason readable: "frequency_cap: 1 email per
// 24h0m0s" → "Frequency cap: 1 email per 24h".
func Reason(r string) string {
	r = humanDurations(r)
	k, rest, ok := strings.Cut(r, ": ")
	if label, known := reasonLabels[k]; ok && known {
		return label + ": " + rest
	}
	if r == "" {
		return r
	}
	return strings.ToUpper(r[:1]) + r[1:]
}

// journeyRow explains one history entry.
func journeyRow(h journeys.HistoryEntry, mask bool) timelineRow {
	row := timelineRow{At: h.At, Kind: h.Action, Journey: h.Journey, Step: h.Step}
	var why []string
	for _, w := range strings.Split(h.Why, "; ") {
		if w != "" {
			why = append(why, Reason(w))
		}
	}
	switch d := h.Detail.(type) {
	case journeys.EnterDetail:
		row.What = "Entered on " + d.Trigger
		why = append(why, "version "+d.Version)
	case journeys.SendDetail:
		row.What = fmt.Sprintf("Sent %s %s", h.Channel, d.Template)
	case journeys.SuppressedDetail:
		if d.Audience != "" {
			row.What = "Not changed in audience " + d.Audience
		} else {
			row.What = fmt.Sprintf("Suppressed %s %s", h.Channel, d.Template)
		}
		why = append([]string{Reason(d.Reason)}, why...)
	case journeys.DelayedDetail:
		row.What = fmt.Sprintf("Delayed %s %s until %s", h.Channel, d.Template, d.Until.UTC().Format("2006-01-02 15:04Z"))
		why = append([]string{Reason(d.Reason)}, why...)
	case journeys.AudienceDetail:
		row.What = "Added to audience " + d.Audience
		if h.Action == journeys.ActAudienceRemove {
			row.What = "Removed from audience " + d.Audience
		}
		if d.Reason != "" {
			why = append(why, Reason(d.Reason))
		}
	case journeys.PassDetail:
		row.What = "Pass updated"
		if d.Push != "" {
			row.What += ", push: " + d.Push
		}
		if d.PushSuppressed != "" {
			why = append(why, "Push not sent: "+Reason(d.PushSuppressed))
		}
	case journeys.TraitDetail:
		v := d.Value
		if mask {
			v = maskValue(d.Trait, v)
		}
		row.What = fmt.Sprintf("Set trait %s = %s", d.Trait, compact(v))
	case journeys.GoalDetail:
		row.What = "Reached the goal: " + d.Event
		if d.Variant != "" {
			why = append(why, "arm "+d.Variant)
		}
	case journeys.ExitDetail:
		row.What = "Left the journey"
		why = append([]string{Reason(d.Reason)}, why...)
	default:
		switch h.Action {
		case journeys.DecisionBranch:
			row.What = "Branch"
		case journeys.DecisionSplit:
			row.What = "Split"
		case journeys.DecisionWaitFor:
			row.What = "Wait ended"
		default:
			row.What = h.Action
		}
	}
	if mask {
		for i := range why {
			why[i] = emailIn.ReplaceAllStringFunc(why[i], MaskEmail)
		}
	}
	row.Why = why
	return row
}

// timeline merges a person's events and journey history, newest first.
func timeline(events []profiles.Event, history []journeys.HistoryEntry, mask bool) []timelineRow {
	out := make([]timelineRow, 0, len(events)+len(history))
	for _, e := range events {
		out = append(out, timelineRow{At: e.Timestamp, Kind: "event", What: e.Type + " " + e.Event + e.Name, Source: e.Source, Details: details(e, mask)})
	}
	for _, h := range history {
		out = append(out, journeyRow(h, mask))
	}
	// Stable: within one instant, the order each list came in (newest
	// first) is kept, and an event comes before what it caused.
	slices.SortStableFunc(out, func(a, b timelineRow) int { return b.At.Compare(a.At) })
	return out
}
