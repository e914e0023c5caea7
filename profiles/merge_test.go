package profiles

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// each makes one Ingest call per event.
func each(evs ...*Event) [][]*Event {
	steps := make([][]*Event, len(evs))
	for i, e := range evs {
		steps[i] = []*Event{e}
	}
	return steps
}

// TestIdentityResolution feeds each case's events through Store.Ingest, one
// call per step, with the store clock a minute later at every step (so the
// profile made by an earlier step is the older one), and checks the profiles
// that result.
func TestIdentityResolution(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*Config)
		steps [][]*Event
		check func(t *testing.T, ts *testStore, res [][]Result)
	}{
		{
			name: "anonymous events then identify are one profile",
			steps: each(
				track("m1", "Product Viewed", anon("a1"), at(1*time.Minute)),
				newEvent(TypePage, "m2", anon("a1"), at(2*time.Minute)),
				identify("m3", user("u1"), anon("a1"), traits("name", "Ana"), at(3*time.Minute)),
				track("m4", "Order Completed", user("u1"), at(4*time.Minute)),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				pid := res[0][0].ProfileID
				if !res[0][0].Created {
					t.Errorf("first event did not create a profile: %+v", res[0][0])
				}
				for i, r := range res[1:] {
					if r[0].ProfileID != pid || r[0].Created || len(r[0].Merged) != 0 {
						t.Errorf("event %d: %+v, want profile %s", i+2, r[0], pid)
					}
				}
				byAnon, byUser := ts.lookup(KindAnonymousID, "a1"), ts.lookup(KindUserID, "u1")
				if byAnon.ID != pid || byUser.ID != pid {
					t.Errorf("anonymous id on %s, user id on %s; want %s", byAnon.ID, byUser.ID, pid)
				}
				if ids := ts.messageIDs(pid, 0); !slices.Equal(ids, []string{"m4", "m3", "m2", "m1"}) || byUser.EventCount != 4 {
					t.Errorf("events %v (event_count %d), want [m4 m3 m2 m1]", ids, byUser.EventCount)
				}
				if got := byUser.TraitValues()["name"]; got != "Ana" {
					t.Errorf("name = %v, want Ana", got)
				}
				if !byUser.LastSeenAt.Equal(t0.Add(4 * time.Minute)) {
					t.Errorf("last_seen_at = %s, want the newest event time", byUser.LastSeenAt)
				}
			},
		},
		{
			name: "identify merges an anonymous profile into the user's",
			steps: each(
				track("m1", "Product Viewed", anon("a1")),
				identify("m2", user("u1"), anon("a2")),
				identify("m3", user("u1"), anon("a1")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				older, newer := res[0][0].ProfileID, res[1][0].ProfileID
				if r := res[2][0]; r.ProfileID != older || !slices.Equal(r.Merged, []string{newer}) {
					t.Errorf("merging event: %+v, want profile %s merging %s", r, older, newer)
				}
				for _, id := range []Identifier{{KindUserID, "u1"}, {KindAnonymousID, "a1"}, {KindAnonymousID, "a2"}, {KindProfileID, newer}} {
					if p := ts.lookup(id.Kind, id.Value); p.ID != older {
						t.Errorf("%s is on %s, want %s", id, p.ID, older)
					}
				}
				p := ts.lookup(KindUserID, "u1")
				if ids := ts.messageIDs(p.ID, 0); len(ids) != 3 || p.EventCount != 3 {
					t.Errorf("events %v (event_count %d), want all 3", ids, p.EventCount)
				}
				if len(p.Ledger) != 1 || p.Ledger[0].Action != LedgerMerge || p.Ledger[0].Profile != newer ||
					!slices.Equal(p.Ledger[0].Identifiers, []Identifier{{KindUserID, "u1"}, {KindAnonymousID, "a1"}}) {
					t.Errorf("ledger %+v, want one merge of %s linked by user_id:u1 and anonymous_id:a1", p.Ledger, newer)
				}
				if got := testutil.ToFloat64(ts.metrics.Merges); got != 1 {
					t.Errorf("merges metric = %v, want 1", got)
				}
			},
		},
		{
			name: "email with stray spaces and capitals is found normalized",
			steps: each(
				identify("m1", user("u1"), traits("email", "  Ana.Garcia@Example.COM ")),
				identify("m2", anon("a7"), traits("email", "ANA.GARCIA@example.com")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindEmail, "ana.garcia@example.com")
				if p.ID != res[0][0].ProfileID || res[1][0].ProfileID != p.ID || res[1][0].Created {
					t.Errorf("email on %s, results %+v %+v; want one profile", p.ID, res[0][0], res[1][0])
				}
				if q := ts.lookup(KindEmail, " Ana.Garcia@EXAMPLE.com"); q.ID != p.ID {
					t.Errorf("lookup by another spelling found %s, want %s", q.ID, p.ID)
				}
				if !p.HasIdentity(Identifier{KindEmail, "ana.garcia@example.com"}) || p.countKind(KindEmail) != 1 {
					t.Errorf("identities %+v, want the one normalized email", p.Identities)
				}
				if got := p.TraitValues()["email"]; got != "ana.garcia@example.com" {
					t.Errorf("email trait = %q, want the normalized spelling", got)
				}
			},
		},
		{
			name: "phone in E.164 with the default region, from traits and context",
			cfg:  func(c *Config) { c.Identity.DefaultRegion = "ES" },
			steps: each(
				identify("m1", user("u1"), traits("phone", "600 11 22 33")),
				newEvent(TypeTrack, "m2", named("Store Visited"), anon("a5"), func(e *Event) {
					e.Context = map[string]any{"traits": map[string]any{"phone": "600-11-22-33"}}
				}),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindPhone, "+34 600 112 233")
				if p.ID != res[0][0].ProfileID || res[1][0].ProfileID != p.ID {
					t.Errorf("phone on %s, events on %s and %s", p.ID, res[0][0].ProfileID, res[1][0].ProfileID)
				}
				if !p.HasIdentity(Identifier{KindPhone, "+34600112233"}) || p.TraitValues()["phone"] != "+34600112233" {
					t.Errorf("identities %+v, traits %v; want phone +34600112233", p.Identities, p.TraitValues())
				}
			},
		},
		{
			name: "alias with previousId merges",
			steps: each(
				track("m1", "Product Viewed", anon("a1")),
				identify("m2", user("u1"), anon("a2")),
				alias("m3", "u1", "a1"),
				alias("m4", "u1", "a9"),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				older, newer := res[0][0].ProfileID, res[1][0].ProfileID
				if r := res[2][0]; r.ProfileID != older || !slices.Equal(r.Merged, []string{newer}) {
					t.Errorf("alias: %+v, want profile %s merging %s", r, older, newer)
				}
				for _, id := range []Identifier{{KindUserID, "u1"}, {KindAnonymousID, "a1"}, {KindAnonymousID, "a2"}, {KindAnonymousID, "a9"}} {
					if p := ts.lookup(id.Kind, id.Value); p.ID != older {
						t.Errorf("%s is on %s, want %s", id, p.ID, older)
					}
				}
				if p := ts.lookup(KindUserID, "u1"); p.EventCount != 4 {
					t.Errorf("event_count = %d, want 4", p.EventCount)
				}
			},
		},
		{
			name: "two known profiles merge into the older, which holds the user id",
			steps: each(
				identify("m1", user("u1"), traits("plan", "pro")),
				identify("m2", anon("a2"), traits("email", "ana@example.com")),
				identify("m3", user("u1"), traits("email", "ana@example.com")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				checkKnownMerge(t, ts, res, res[0][0].ProfileID, res[1][0].ProfileID)
			},
		},
		{
			name: "two known profiles merge into the older, which holds only an email",
			steps: each(
				identify("m1", anon("a2"), traits("email", "ana@example.com")),
				identify("m2", user("u1"), traits("plan", "pro")),
				identify("m3", user("u1"), traits("email", "ana@example.com")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				checkKnownMerge(t, ts, res, res[0][0].ProfileID, res[1][0].ProfileID)
			},
		},
		{
			name: "ids merged away follow a chain of merges",
			steps: each(
				track("m1", "Product Viewed", anon("a1")),
				track("m2", "Product Viewed", anon("a2")),
				track("m3", "Product Viewed", anon("a3")),
				identify("m4", user("u1"), anon("a3")),
				identify("m5", user("u1"), anon("a2")),
				identify("m6", user("u1"), anon("a1")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p1, p2, p3 := res[0][0].ProfileID, res[1][0].ProfileID, res[2][0].ProfileID
				if !slices.Equal(res[4][0].Merged, []string{p3}) || !slices.Equal(res[5][0].Merged, []string{p2}) {
					t.Errorf("merged %v then %v, want [%s] then [%s]", res[4][0].Merged, res[5][0].Merged, p3, p2)
				}
				for _, id := range []string{p1, p2, p3} {
					if p := ts.lookup(KindProfileID, id); p.ID != p1 {
						t.Errorf("profile_id:%s leads to %s, want %s", id, p.ID, p1)
					}
				}
				p := ts.lookup(KindUserID, "u1")
				if !sameStrings(p.MergedFrom, []string{p2, p3}) || p.EventCount != 6 || ts.ProfileCount() != 1 {
					t.Errorf("merged_from %v, event_count %d, %d profiles; want [%s %s], 6, 1", p.MergedFrom, p.EventCount, ts.ProfileCount(), p2, p3)
				}
			},
		},
		{
			name: "merge refused: two user ids linked by a shared anonymous id",
			cfg:  func(c *Config) { c.Identity.Limits[KindUserID] = 1 },
			steps: each(
				identify("m1", user("u1"), anon("a1")),
				identify("m2", user("u2"), anon("a2")),
				track("m3", "Signed In", user("u2"), anon("a1")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				checkRefusedMerge(t, ts, res, []Identifier{{KindUserID, "u2"}, {KindAnonymousID, "a1"}})
				if p := ts.lookup(KindAnonymousID, "a1"); p.ID != res[0][0].ProfileID {
					t.Errorf("a1 moved to %s", p.ID)
				}
			},
		},
		{
			name: "merge refused: two user ids linked by a shared email",
			cfg:  func(c *Config) { c.Identity.Limits[KindUserID] = 1 },
			steps: each(
				identify("m1", user("u1"), traits("email", "shared@example.com")),
				identify("m2", user("u2"), anon("a2")),
				identify("m3", user("u2"), traits("email", "Shared@Example.com")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				checkRefusedMerge(t, ts, res, []Identifier{{KindUserID, "u2"}, {KindEmail, "shared@example.com"}})
				if p := ts.lookup(KindEmail, "shared@example.com"); p.ID != res[0][0].ProfileID {
					t.Errorf("email moved to %s", p.ID)
				}
			},
		},
		{
			name: "merges are allowed up to a raised limit",
			cfg:  func(c *Config) { c.Identity.Limits[KindUserID] = 2 },
			steps: each(
				identify("m1", user("u1"), anon("a1")),
				identify("m2", user("u2"), anon("a2")),
				track("m3", "Signed In", user("u2"), anon("a1")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				if len(res[2][0].Merged) != 1 || ts.ProfileCount() != 1 {
					t.Errorf("result %+v, %d profiles; want a merge into one", res[2][0], ts.ProfileCount())
				}
				if got := testutil.ToFloat64(ts.metrics.RefusedMerges.WithLabelValues(KindUserID)); got != 0 {
					t.Errorf("refused merges = %v, want 0", got)
				}
			},
		},
		{
			name: "an email over the limit is refused",
			cfg:  func(c *Config) { c.Identity.Limits[KindEmail] = 2 },
			steps: each(
				identify("m1", user("u1"), traits("email", "one@example.com")),
				identify("m2", user("u1"), traits("email", "two@example.com")),
				identify("m3", user("u1"), traits("email", "three@example.com")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindUserID, "u1")
				if res[2][0].ProfileID != p.ID || p.EventCount != 3 {
					t.Errorf("third event on %s, event_count %d; want %s, 3", res[2][0].ProfileID, p.EventCount, p.ID)
				}
				ts.lookup(KindEmail, "one@example.com")
				ts.lookup(KindEmail, "two@example.com")
				ts.notFound(KindEmail, "three@example.com")
				checkRefusedIdentifier(t, ts, p, Identifier{KindEmail, "three@example.com"}, "m3")
			},
		},
		{
			name: "a second user id on a known device is refused",
			steps: each(
				identify("m1", user("u1"), anon("a1")),
				identify("m2", user("u2"), anon("a1")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindAnonymousID, "a1")
				if res[1][0].ProfileID != p.ID || ts.ProfileCount() != 1 {
					t.Errorf("second event on %s, %d profiles; want %s, 1", res[1][0].ProfileID, ts.ProfileCount(), p.ID)
				}
				ts.notFound(KindUserID, "u2")
				checkRefusedIdentifier(t, ts, p, Identifier{KindUserID, "u2"}, "m2")
			},
		},
		{
			name: "refusals in the ledger are bounded, newest kept",
			cfg:  func(c *Config) { c.Identity.Limits[KindEmail] = 1 },
			steps: func() [][]*Event {
				var evs []*Event
				for i := range 56 {
					evs = append(evs, identify(fmt.Sprintf("m%d", i), user("u1"), traits("email", fmt.Sprintf("e%d@example.com", i))))
				}
				return [][]*Event{evs[:1], evs[1:]}
			}(),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindUserID, "u1")
				if len(p.Ledger) != maxRefusals {
					t.Fatalf("ledger holds %d entries, want %d", len(p.Ledger), maxRefusals)
				}
				first, last := p.Ledger[0], p.Ledger[len(p.Ledger)-1]
				if first.MessageID != "m6" || last.MessageID != "m55" {
					t.Errorf("ledger runs from %s to %s, want m6 to m55", first.MessageID, last.MessageID)
				}
				if got := testutil.ToFloat64(ts.metrics.RefusedIDs.WithLabelValues(KindEmail)); got != 55 {
					t.Errorf("refused identifiers metric = %v, want 55", got)
				}
			},
		},
		{
			name: "traits: last write wins by event time",
			steps: each(
				identify("m1", user("u1"), traits("plan", "pro"), at(10*time.Minute)),
				identify("m2", user("u1"), traits("plan", "free", "city", "Madrid"), at(5*time.Minute)),
				identify("m3", user("u1"), traits("name", "Ana"), at(11*time.Minute)),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindUserID, "u1")
				want := map[string]any{"plan": "pro", "city": "Madrid", "name": "Ana"}
				if got := p.TraitValues(); !sameTraits(got, want) {
					t.Errorf("traits %v, want %v", got, want)
				}
				if at := p.Traits["plan"].At; !at.Equal(t0.Add(10 * time.Minute)) {
					t.Errorf("plan set at %s, want the newer event's time", at)
				}
				if p.EventCount != 3 {
					t.Errorf("the late event was not kept: event_count %d", p.EventCount)
				}
			},
		},
		{
			name: "traits: after a merge the newer value wins",
			steps: each(
				identify("m1", user("u1"), traits("plan", "pro", "tier", "gold"), at(10*time.Minute)),
				identify("m2", anon("a2"), traits("plan", "enterprise"), at(20*time.Minute)),
				identify("m3", anon("a2"), traits("tier", "silver"), at(5*time.Minute)),
				identify("m4", user("u1"), anon("a2"), at(30*time.Minute)),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindUserID, "u1")
				if p.ID != res[0][0].ProfileID || len(res[3][0].Merged) != 1 {
					t.Fatalf("survivor %s, result %+v; want %s after a merge", p.ID, res[3][0], res[0][0].ProfileID)
				}
				want := map[string]any{"plan": "enterprise", "tier": "gold"}
				if got := p.TraitValues(); !sameTraits(got, want) {
					t.Errorf("traits %v, want %v", got, want)
				}
				if !p.LastSeenAt.Equal(t0.Add(30 * time.Minute)) {
					t.Errorf("last_seen_at = %s", p.LastSeenAt)
				}
			},
		},
		{
			// Consent is ordered by receipt, not by the event time a
			// client claims: m3, dated before the others but received
			// after them, changes sms.
			name: "consent from traits and Consent Updated, with history",
			steps: each(
				identify("m1", user("u1"), traits("consent", map[string]any{"email": true, "sms": false}), at(1*time.Minute), recv(1*time.Minute)),
				track("m2", EventConsentUpdated, user("u1"), props("email", false, "source", "preference_center"), at(2*time.Minute), recv(2*time.Minute)),
				track("m3", EventConsentUpdated, user("u1"), props("sms", true), at(0), recv(3*time.Minute)),
				identify("m4", user("u1"), traits("consent", map[string]any{"email": false}), at(3*time.Minute), recv(4*time.Minute)),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindUserID, "u1")
				if got := p.ConsentValues(); len(got) != 2 || got["email"] || !got["sms"] {
					t.Errorf("consent %v, want email false, sms true", got)
				}
				if c := p.Consent["email"]; !c.At.Equal(t0.Add(4*time.Minute)) || c.Source != "web" {
					t.Errorf("email consent %+v, want set by the newest event", c)
				}
				hist := slices.Clone(p.ConsentHistory)
				slices.SortStableFunc(hist, func(a, b ConsentChange) int {
					if c := a.At.Compare(b.At); c != 0 {
						return c
					}
					return strings.Compare(a.Purpose, b.Purpose)
				})
				want := []ConsentChange{
					{Purpose: "email", Granted: true, At: t0.Add(time.Minute), Source: "web", MessageID: "m1"},
					{Purpose: "sms", Granted: false, At: t0.Add(time.Minute), Source: "web", MessageID: "m1"},
					{Purpose: "email", Granted: false, At: t0.Add(2 * time.Minute), Source: "web", MessageID: "m2"},
					{Purpose: "sms", Granted: true, At: t0.Add(3 * time.Minute), Source: "web", MessageID: "m3"},
				}
				if !slices.EqualFunc(hist, want, func(a, b ConsentChange) bool {
					return a.At.Equal(b.At) && a.Purpose == b.Purpose && a.Granted == b.Granted && a.MessageID == b.MessageID
				}) {
					t.Errorf("consent history %+v, want %+v", hist, want)
				}
				if _, ok := p.Traits["consent"]; ok {
					t.Errorf("consent stored as a trait too: %v", p.TraitValues())
				}
			},
		},
		{
			name: "messageId dedupe, across calls and within one",
			steps: [][]*Event{
				{identify("m1", user("u1"), traits("plan", "pro"))},
				{identify("m1", user("u1"), traits("plan", "free"), at(time.Hour))},
				{track("m2", "Signed In", user("u1")), track("m2", "Signed In", user("u1"))},
			},
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				if r := res[1][0]; !r.Duplicate || r.ProfileID != "" {
					t.Errorf("resent m1: %+v, want duplicate", r)
				}
				if res[2][0].Duplicate || !res[2][1].Duplicate {
					t.Errorf("m2 twice in one call: %+v, want the second duplicate", res[2])
				}
				p := ts.lookup(KindUserID, "u1")
				if ids := ts.messageIDs(p.ID, 0); p.EventCount != 2 || !sameStrings(ids, []string{"m1", "m2"}) {
					t.Errorf("events %v (event_count %d), want m1 and m2 once", ids, p.EventCount)
				}
				if got := p.TraitValues()["plan"]; got != "pro" {
					t.Errorf("duplicate applied: plan %v", got)
				}
				if got := testutil.ToFloat64(ts.metrics.Duplicates.WithLabelValues("web")); got != 2 {
					t.Errorf("duplicates metric = %v, want 2", got)
				}
				if !ts.seen("m1") || ts.seen("m3") {
					t.Errorf("Seen(m1) %v, Seen(m3) %v", ts.seen("m1"), ts.seen("m3"))
				}
			},
		},
		{
			name: "events bounded by max_events, oldest trimmed",
			cfg:  func(c *Config) { c.MaxEvents = 3 },
			steps: each(
				track("m1", "Page Scrolled", user("u1"), at(1*time.Minute)),
				track("m2", "Page Scrolled", user("u1"), at(2*time.Minute)),
				track("m3", "Page Scrolled", user("u1"), at(3*time.Minute)),
				track("m4", "Page Scrolled", user("u1"), at(4*time.Minute)),
				track("m5", "Page Scrolled", user("u1"), at(5*time.Minute)),
				track("m0", "Page Scrolled", user("u1"), at(0)),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindUserID, "u1")
				if ids := ts.messageIDs(p.ID, 0); !slices.Equal(ids, []string{"m5", "m4", "m3"}) || p.EventCount != 3 {
					t.Errorf("events %v (event_count %d), want [m5 m4 m3]", ids, p.EventCount)
				}
				if ids := ts.messageIDs(p.ID, 2); !slices.Equal(ids, []string{"m5", "m4"}) {
					t.Errorf("two most recent events %v, want [m5 m4]", ids)
				}
			},
		},
		{
			name: "a merge keeps the most recent max_events",
			cfg:  func(c *Config) { c.MaxEvents = 4 },
			steps: each(
				track("m1", "Product Viewed", anon("a1"), at(1*time.Minute)),
				track("m2", "Product Viewed", anon("a2"), at(2*time.Minute)),
				track("m3", "Product Viewed", anon("a1"), at(3*time.Minute)),
				track("m4", "Product Viewed", anon("a2"), at(4*time.Minute)),
				track("m5", "Product Viewed", anon("a1"), at(5*time.Minute)),
				track("m6", "Product Viewed", anon("a2"), at(6*time.Minute)),
				identify("m7", user("u1"), anon("a1"), at(7*time.Minute)),
				identify("m8", user("u1"), anon("a2"), at(8*time.Minute)),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup(KindAnonymousID, "a2")
				if ids := ts.messageIDs(p.ID, 0); !slices.Equal(ids, []string{"m8", "m7", "m6", "m5"}) || p.EventCount != 4 {
					t.Errorf("events %v (event_count %d), want [m8 m7 m6 m5]", ids, p.EventCount)
				}
			},
		},
		{
			name: "custom identifier kind from config",
			cfg: func(c *Config) {
				c.Identity.Kinds = []KindConfig{{Name: "loyalty_card", Paths: []string{"traits.loyalty_card", "properties.loyalty_card"}, Normalize: "digits"}}
			},
			steps: each(
				identify("m1", anon("a1"), traits("loyalty_card", "1234-5678-90")),
				track("m2", "Card Scanned", anon("pos-7"), props("loyalty_card", json.Number("1234567890")), source("pos")),
				identify("m3", anon("a1"), traits("loyalty_card", "99 99")),
			),
			check: func(t *testing.T, ts *testStore, res [][]Result) {
				p := ts.lookup("loyalty_card", "1234 5678 90")
				if p.ID != res[0][0].ProfileID || res[1][0].ProfileID != p.ID || res[1][0].Created {
					t.Errorf("card on %s, events on %s and %+v", p.ID, res[0][0].ProfileID, res[1][0])
				}
				if q := ts.lookup(KindAnonymousID, "pos-7"); q.ID != p.ID {
					t.Errorf("the till's anonymous id is on %s, want %s", q.ID, p.ID)
				}
				if !p.HasIdentity(Identifier{"loyalty_card", "1234567890"}) {
					t.Errorf("identities %+v, want loyalty_card:1234567890", p.Identities)
				}
				// Kinds without a configured limit hold one value.
				ts.notFound("loyalty_card", "9999")
				checkRefusedIdentifier(t, ts, ts.lookup(KindAnonymousID, "a1"), Identifier{"loyalty_card", "9999"}, "m3")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			ts := openStore(t, cfg)
			var res [][]Result
			for _, step := range tt.steps {
				res = append(res, ts.ingest(step...))
				ts.clock.Advance(time.Minute)
			}
			tt.check(t, ts, res)
			checkGraph(t, ts.Store)
		})
	}
}

// checkKnownMerge checks the merge by event 3 of the profiles made by events
// 1 and 2, one holding user_id:u1 and the other email:ana@example.com: the
// older survives, and the ledger says why.
func checkKnownMerge(t *testing.T, ts *testStore, res [][]Result, older, newer string) {
	t.Helper()
	if r := res[2][0]; r.ProfileID != older || !slices.Equal(r.Merged, []string{newer}) || r.Created {
		t.Fatalf("merging event: %+v, want profile %s merging %s", r, older, newer)
	}
	for _, id := range []Identifier{{KindUserID, "u1"}, {KindEmail, "ana@example.com"}, {KindAnonymousID, "a2"}, {KindProfileID, older}, {KindProfileID, newer}} {
		if p := ts.lookup(id.Kind, id.Value); p.ID != older {
			t.Errorf("%s is on %s, want the survivor %s", id, p.ID, older)
		}
	}
	p := ts.lookup(KindUserID, "u1")
	if !p.CreatedAt.Equal(t0) || !slices.Equal(p.MergedFrom, []string{newer}) || p.EventCount != 3 || ts.ProfileCount() != 1 {
		t.Errorf("survivor created %s, merged_from %v, event_count %d, %d profiles", p.CreatedAt, p.MergedFrom, p.EventCount, ts.ProfileCount())
	}
	var merges []LedgerEntry
	for _, l := range p.Ledger {
		if l.Action == LedgerMerge {
			merges = append(merges, l)
		}
	}
	want := []Identifier{{KindUserID, "u1"}, {KindEmail, "ana@example.com"}}
	if len(merges) != 1 || merges[0].Profile != newer || !slices.Equal(merges[0].Identifiers, want) ||
		merges[0].MessageID != "m3" || merges[0].EventType != TypeIdentify || merges[0].Reason == "" {
		t.Errorf("merge ledger %+v, want one entry naming %s, linked by %v, from m3", merges, newer, want)
	}
	if got := p.TraitValues()["plan"]; got != "pro" {
		t.Errorf("plan = %v, want pro from the profile merged in", got)
	}
}

// checkRefusedMerge checks that event 3 linked the profiles of events 1 and
// 2 by linking, and the merge was refused on the user_id limit.
func checkRefusedMerge(t *testing.T, ts *testStore, res [][]Result, linking []Identifier) {
	t.Helper()
	a, b := res[0][0].ProfileID, res[1][0].ProfileID
	if r := res[2][0]; r.ProfileID != b || len(r.Merged) != 0 {
		t.Errorf("linking event: %+v, want it on %s without a merge", r, b)
	}
	if ts.ProfileCount() != 2 {
		t.Errorf("%d profiles, want 2", ts.ProfileCount())
	}
	pa, pb := ts.lookup(KindUserID, "u1"), ts.lookup(KindUserID, "u2")
	if pa.ID != a || pb.ID != b {
		t.Fatalf("u1 on %s, u2 on %s; want %s, %s", pa.ID, pb.ID, a, b)
	}
	if len(pa.Ledger) != 0 {
		t.Errorf("ledger of %s: %+v, want empty", a, pa.Ledger)
	}
	if len(pb.Ledger) != 1 {
		t.Fatalf("ledger of %s: %+v, want one refused merge", b, pb.Ledger)
	}
	l := pb.Ledger[0]
	if l.Action != LedgerRefusedMerge || l.Profile != a || !slices.Equal(l.Identifiers, linking) || l.MessageID != "m3" || !strings.Contains(l.Reason, "user_id") {
		t.Errorf("ledger entry %+v, want refused_merge with %s linked by %v", l, a, linking)
	}
	if pa.EventCount != 1 || pb.EventCount != 2 {
		t.Errorf("event counts %d and %d, want 1 and 2", pa.EventCount, pb.EventCount)
	}
	if got := testutil.ToFloat64(ts.metrics.RefusedMerges.WithLabelValues(KindUserID)); got != 1 {
		t.Errorf("refused merges metric = %v, want 1", got)
	}
	if got := testutil.ToFloat64(ts.metrics.Merges); got != 0 {
		t.Errorf("merges metric = %v, want 0", got)
	}
}

// checkRefusedIdentifier checks that p's ledger ends with the refusal of id
// by messageID, and that the refusal was counted.
func checkRefusedIdentifier(t *testing.T, ts *testStore, p *Profile, id Identifier, messageID string) {
	t.Helper()
	if p.HasIdentity(id) {
		t.Errorf("profile %s holds %s", p.ID, id)
	}
	if len(p.Ledger) == 0 {
		t.Fatalf("ledger of %s is empty, want a refused identifier", p.ID)
	}
	l := p.Ledger[len(p.Ledger)-1]
	if l.Action != LedgerRefusedIdentifier || !slices.Equal(l.Identifiers, []Identifier{id}) || l.MessageID != messageID || l.Profile != "" {
		t.Errorf("ledger entry %+v, want refused_identifier of %s by %s", l, id, messageID)
	}
	if got := testutil.ToFloat64(ts.metrics.RefusedIDs.WithLabelValues(id.Kind)); got != 1 {
		t.Errorf("refused identifiers metric for %s = %v, want 1", id.Kind, got)
	}
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameTraits(got, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestSurvivorOf(t *testing.T) {
	old := &Profile{ID: "ffff", CreatedAt: t0}
	young := &Profile{ID: "0000", CreatedAt: t0.Add(time.Millisecond)}
	twinA := &Profile{ID: "aaaa", CreatedAt: t0}
	twinB := &Profile{ID: "bbbb", CreatedAt: t0}
	tests := []struct {
		a, b     *Profile
		survivor string
		loser    string
	}{
		{old, young, "ffff", "0000"},
		{young, old, "ffff", "0000"},
		{twinA, twinB, "aaaa", "bbbb"},
		{twinB, twinA, "aaaa", "bbbb"},
	}
	for _, tt := range tests {
		s, l := survivorOf(tt.a, tt.b)
		if s.ID != tt.survivor || l.ID != tt.loser {
			t.Errorf("survivorOf(%s, %s) = %s, %s; want %s, %s", tt.a.ID, tt.b.ID, s.ID, l.ID, tt.survivor, tt.loser)
		}
	}
}
