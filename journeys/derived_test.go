package journeys_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
)

// An audience entered by a backfill (not by an event) still starts the
// journeys that trigger on it, in the backfill's commit.
func TestBackfilledAudienceEntryTriggersJourney(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := profiles.Open(ctx, path, profiles.DefaultConfig(), profiles.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	compile := func(audiences string) *rules.Ruleset {
		specs, err := rules.Parse("r.yaml", []byte(audiences))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := rules.Compile(specs, rules.EnvOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	// First without the audience: the person is ingested, no journey runs.
	rs := compile("audiences:\n  - name: other\n    expression: \"false\"\n")
	re, err := rules.NewEngine(st.DB(), rs, rules.EngineOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	rs2 := compile("audiences:\n  - name: other\n    expression: \"false\"\n  - name: named\n    expression: has(profile.traits.name)\n")
	j, err := journeys.Parse("j.yaml", []byte("id: welcome\ntrigger:\n  audience: {enter: named}\nsteps:\n  - id: hello\n    send: {channel: webhook, template: hello}\n"),
		rs2.Env, journeys.Known{Audiences: []string{"other", "named"}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := journeys.NewSet([]*journeys.Journey{j}, nil)
	if err != nil {
		t.Fatal(err)
	}
	je, err := journeys.New(st.DB(), set, journeys.Options{Clock: journeys.ClockFunc(clock), Rules: re})
	if err != nil {
		t.Fatal(err)
	}
	st.Use(re, je)
	var got []journeys.Action
	je.Observe(func(a []journeys.Action) { got = append(got, a...) })
	if _, err := st.Ingest(ctx, []*profiles.Event{{Type: profiles.TypeIdentify, MessageID: "m1", UserID: "u1", Traits: map[string]any{"name": "Ana"}, Timestamp: now, Source: "web"}}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("actions before the audience exists: %+v", got)
	}
	// The new audience arrives with a reload; the backfill puts Ana in it.
	re.Replace(rs2)
	if err := re.Backfill(ctx, st); err != nil {
		t.Fatal(err)
	}
	var sends int
	for _, a := range got {
		if a.Journey == "welcome" && a.Action == journeys.ActSend {
			sends++
		}
	}
	if sends != 1 {
		t.Fatalf("actions after backfill = %+v, want one send of the welcome journey", got)
	}
}
