package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cartera/channels"
	"cartera/internal/clocktest"
	"cartera/profiles"
)

// addVIPRetarget adds to a copy of testdata/delivery a vip audience and a
// journey that adds its members to retargeting.
func addVIPRetarget(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "rules", "audiences.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n  - name: vip\n    expression: has(profile.traits.vip) && profile.traits.vip == true\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	journey := "id: vip_retarget\ntrigger:\n  audience: {enter: vip}\nsteps:\n  - id: add\n    audience: {add: retargeting}\n"
	if err := os.WriteFile(filepath.Join(dir, "journeys", "vip_retarget.yaml"), []byte(journey), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeAudienceAddCarriesEmailOfTheSameEvent: one identify that brings
// a person's email, vip: true and ads consent enters a journey on the vip
// audience whose step adds them to retargeting: the add reaches Meta with
// that email, and the profile records Audience Synced. (The engine once
// read the person as stored before the commit, without the email, and the
// add was dropped without a word.)
func TestServeAudienceAddCarriesEmailOfTheSameEvent(t *testing.T) {
	t.Parallel()
	rig := newDeliveryRig(t, "")
	addVIPRetarget(t, rig.dir)
	s, _ := rig.serve(t, nil)

	mustOK(t, s.send(t, dlWebKey, "/v1/identify",
		`{"userId":"u-vera","traits":{"email":"Vera@Example.com","vip":true,"consent":{"ads":true}}}`))
	vera := [2]string{hashOf("vera@example.com"), ""}
	eventually(t, 10*time.Second, "the vip's add on Meta", func() bool {
		_, ok := metaRows(t, rig.meta.Hits(), "POST", dlRetargetPath)[vera]
		return ok
	})
	eventually(t, 10*time.Second, "Audience Synced on the profile", func() bool {
		for _, ev := range eventsNamed(s.profile(t, "user_id:u-vera"), "Audience Synced") {
			if p := props(ev); p["destination"] == "meta" && p["audience"] == "retargeting" && p["op"] == "add" {
				return true
			}
		}
		return false
	})
}

// TestJourneyAudienceEnqueueFailureKeepsAction: when the ad audience change
// cannot be put in the channels' outbox, the journey action stays in the
// journeys' outbox and the next drain enqueues it. (It was logged and
// removed: the add was lost.)
func TestJourneyAudienceEnqueueFailureKeepsAction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rig := newDeliveryRig(t, "")
	addVIPRetarget(t, rig.dir)
	cfg, err := loadConfig(&serveFlags{config: rig.config, set: map[string]bool{"config": true}}, envOf(rig.env))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data = rig.data
	defs, err := compileDefinitions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	clock := clocktest.New(now)
	a, err := openApp(ctx, cfg, defs, appOptions{Now: clock.Now, Deliver: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Getenv: envOf(rig.env)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	_, err = a.store.Ingest(ctx, []*profiles.Event{{Type: profiles.TypeIdentify, MessageID: "m1", UserID: "u-vera", Source: "web", Timestamp: now, ReceivedAt: now,
		Traits: map[string]any{"email": "vera@example.com", "vip": true, "consent": map[string]any{"ads": true}}}})
	if err != nil {
		t.Fatal(err)
	}
	// A destination the outbox refuses: the enqueue fails.
	dests := a.delivery.audiences["retargeting"]
	a.delivery.audiences["retargeting"] = append([]string{""}, dests...)
	if n, err := a.drainJourneys(ctx, 100); err == nil || !strings.Contains(err.Error(), "needs a key and a destination") || n != 0 {
		t.Fatalf("drain with a failing enqueue = %d, %v; want 0 and the enqueue's error", n, err)
	}
	queued := func() []*channels.Message {
		msgs, err := a.delivery.outbox.List(channels.StateQueued, 100)
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	if msgs := queued(); len(msgs) != 0 {
		t.Fatalf("a failed enqueue left %d messages", len(msgs))
	}
	a.delivery.audiences["retargeting"] = dests
	if n, err := a.drainJourneys(ctx, 100); err != nil || n != 0 {
		t.Fatalf("a drain within the failed action's backoff = %d, %v; want 0, nil", n, err)
	}
	clock.Advance(2 * time.Second)
	if n, err := a.drainJourneys(ctx, 100); err != nil || n != 1 {
		t.Fatalf("drain after the failure = %d, %v; want the kept action", n, err)
	}
	got := map[string]bool{}
	for _, m := range queued() {
		got[m.Destination] = strings.Contains(string(m.Payload), "vera@example.com")
	}
	if len(got) != len(dests) {
		t.Errorf("queued for %v, want %v", got, dests)
	}
	for _, d := range dests {
		if !got[d] {
			t.Errorf("no add with the email for %s: %v", d, got)
		}
	}
	if n, err := a.drainJourneys(ctx, 100); err != nil || n != 0 {
		t.Errorf("a third drain = %d, %v; want nothing left", n, err)
	}
}
