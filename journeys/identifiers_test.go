package journeys

import (
	"slices"
	"testing"
	"time"

	"cartera/profiles"
)

// vipRetargetJourney adds a person to an ad audience when they become VIP.
const vipRetargetJourney = `
id: vip_retarget
trigger:
  audience: {enter: vip}
steps:
  - id: add
    audience: {add: retargeting}
`

// TestAudienceAddCarriesIdentifiersOfTheSameEvent: the email that arrives
// in the very event that makes the person VIP goes with the audience add
// (the add is matched on it at the ad platforms). Before, the engine read
// the profile as stored before the commit and the add left without it.
func TestAudienceAddCarriesIdentifiersOfTheSameEvent(t *testing.T) {
	const adsPolicy = "policies:\n  consent_required: [ads]\n  ad_audiences:\n    - name: retargeting\n"
	for _, tc := range []struct {
		name   string
		before func(h *harness) // what the person did before
	}{
		{name: "new person"},
		{name: "known person, anonymous so far", before: func(h *harness) {
			h.track("ana", "Product Viewed", nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, adsPolicy, map[string]string{"vip.yaml": vipRetargetJourney})
			if tc.before != nil {
				tc.before(h)
			}
			pid := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", Traits: map[string]any{
				"email": "Ana@Example.com", "phone": "+34 600 000 001", "vip": true, "consent": map[string]any{"ads": true},
			}}).ProfileID
			add := only(t, "audience_add", h.actions(ActAudienceAdd, pid))
			got := only(t, "delivered", h.drain())
			if got.Key != add.Key {
				t.Fatalf("delivered %+v, want the add %+v", got, add)
			}
			if got.Identifiers == nil || !slices.Equal(got.Identifiers.Emails, []string{"ana@example.com"}) {
				t.Errorf("identifiers = %+v, want the email of the same event", got.Identifiers)
			}
		})
	}
}

// TestAudienceChangeWithoutIdentifiers: a person the ad platforms cannot
// match (no email, no phone) is not silently dropped: the add is recorded
// as suppressed with the reason, and nothing is left to remove later.
func TestAudienceChangeWithoutIdentifiers(t *testing.T) {
	journey := vipRetargetJourney + `
  - id: hold
    wait: 1d
  - id: leave
    audience: {remove: retargeting}
`
	h := newHarness(t, openPolicy, map[string]string{"vip.yaml": journey})
	pid := h.identify("ana", map[string]any{"vip": true})
	s := only(t, "suppressed", h.actions(ActSuppressed, pid))
	if s.Step != "add" || s.Channel != "audience" || dm(s)["reason"] != ReasonNoIdentifiers || dm(s)["audience"] != "retargeting" {
		t.Errorf("suppressed = %+v", s)
	}
	if got := h.drain(); len(got) != 0 {
		t.Errorf("delivered %s", describe(got))
	}
	h.fireUntil(t0.Add(48 * time.Hour))
	if got := h.actions(ActAudienceRemove, pid); len(got) != 0 {
		t.Errorf("removed from an audience never joined: %s", describe(got))
	}
	if n := h.count("vip_retarget", "add", "suppressed"); n != 1 {
		t.Errorf("suppressed count = %d", n)
	}
}
