package console

import (
	"slices"
	"testing"
	"time"

	"cartera/journeys"
	"cartera/profiles"
)

func TestJourneyRowSaysWhy(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		h    journeys.HistoryEntry
		mask bool
		what string
		why  []string
	}{
		{"send", journeys.HistoryEntry{Action: journeys.ActSend, Channel: "email", Detail: journeys.SendDetail{Template: "cart_reminder"},
			Why: "consent: email granted; quiet_hours: 10:00 Europe/Madrid is outside 21:00-09:00; frequency_cap: 3 email per 24h0m0s, 0 sent before"},
			false, "Sent email cart_reminder", []string{"Consent: email granted", "Quiet hours: 10:00 Europe/Madrid is outside 21:00-09:00", "Frequency cap: 3 email per 24h, 0 sent before"}},
		{"suppressed by consent", journeys.HistoryEntry{Action: journeys.ActSuppressed, Channel: "email", Detail: journeys.SuppressedDetail{Template: "cart_reminder", Reason: "consent: no email consent"}},
			false, "Suppressed email cart_reminder", []string{"Consent: no email consent"}},
		{"suppressed by a policy", journeys.HistoryEntry{Action: journeys.ActSuppressed, Channel: "sms", Detail: journeys.SuppressedDetail{Template: "t", Reason: "suppression: recent_buyer"}},
			false, "Suppressed sms t", []string{"Suppression policy: recent_buyer"}},
		{"delayed", journeys.HistoryEntry{Action: journeys.ActDelayed, Channel: "email", Detail: journeys.DelayedDetail{Template: "t", Reason: "quiet_hours: 21:00-09:00", Until: at}},
			false, "Delayed email t until 2026-12-06 10:00Z", []string{"Quiet hours: 21:00-09:00"}},
		{"audience held", journeys.HistoryEntry{Action: journeys.ActSuppressed, Channel: "audience", Detail: journeys.SuppressedDetail{Audience: "retargeting", Reason: "held: still in retargeting for winback"}},
			false, "Not changed in audience retargeting", []string{"Held by another journey: still in retargeting for winback"}},
		{"branch", journeys.HistoryEntry{Action: journeys.DecisionBranch, Why: `case 1, when in_audience("priority_recovery") → reminder`},
			false, "Branch", []string{`Case 1, when in_audience("priority_recovery") → reminder`}},
		{"exit", journeys.HistoryEntry{Action: journeys.ActExit, Detail: journeys.ExitDetail{Reason: "exit_when: Order Completed"}},
			false, "Left the journey", []string{"Exit condition: Order Completed"}},
		{"trait masked", journeys.HistoryEntry{Action: journeys.ActSetTrait, Detail: journeys.TraitDetail{Trait: "email", Value: "ana@example.com"}},
			true, `Set trait email = a***@example.com`, nil},
		{"condition masked", journeys.HistoryEntry{Action: journeys.DecisionBranch, Why: `case 1, when profile.traits.email == "ana@example.com" → a`},
			true, "Branch", []string{`Case 1, when profile.traits.email == "a***@example.com" → a`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := journeyRow(tc.h, tc.mask)
			if r.What != tc.what || !slices.Equal(r.Why, tc.why) {
				t.Errorf("journeyRow = %q %q, want %q %q", r.What, r.Why, tc.what, tc.why)
			}
		})
	}
}

func TestTimelineNewestFirst(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	events := []profiles.Event{{Type: "track", Event: "Product Added", Timestamp: at.Add(time.Minute)}, {Type: "identify", Timestamp: at}}
	history := []journeys.HistoryEntry{{At: at.Add(2 * time.Minute), Action: journeys.ActSend, Detail: journeys.SendDetail{Template: "x"}}, {At: at.Add(time.Minute), Action: journeys.ActEnter, Detail: journeys.EnterDetail{Trigger: "Product Added"}}}
	var got []string
	for _, r := range timeline(events, history, false) {
		got = append(got, r.Kind)
	}
	if want := []string{"send", "event", "enter", "event"}; !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
}
