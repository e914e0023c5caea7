package journeys

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"cartera/profiles"
)

// madridPolicy is the examples' quiet hours (21:00-09:00 Madrid time) with
// after_purchase and email consent; extra is added under policies.
func madridPolicy(extra string) string {
	return `
policies:
  timezone: Europe/Madrid
  consent_required: [email]
  quiet_hours: {start: "21:00", end: "09:00", channels: [email]}
  suppress:
    - name: after_purchase
      when: event_count("Order Completed", duration("72h")) > 0
` + extra
}

// cartJourney reminds 30 minutes after a cart add; a purchase ends it.
const cartJourney = `
id: cart
trigger:
  event: Product Added
exit_when:
  - event: Order Completed
steps:
  - id: idle
    wait: 30m
  - id: remind
    send: {channel: email, template: cart_reminder}
  - id: done
    exit: true
`

// cartGoalJourney is cartJourney with a goal instead of an exit: a
// purchase does not end it.
var cartGoalJourney = strings.Replace(cartJourney, "exit_when:\n  - event: Order Completed", "goal:\n  event: Order Completed", 1)

// TestQuietHoursDelay: a send quiet hours hold back goes at the end of
// them, in the person's time zone and spread over the first minutes,
// unless something at release says no.
func TestQuietHoursDelay(t *testing.T) {
	madrid, _ := time.LoadLocation("Europe/Madrid")
	newYork, _ := time.LoadLocation("America/New_York")
	// at is a Madrid wall-clock time.
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, madrid) }
	type result struct {
		action string // of the reminder step at the end: send or suppressed
		reason string // prefix of a suppression's reason
	}
	for _, tc := range []struct {
		name    string
		policy  string
		journey string
		traits  map[string]any
		// add is when the cart is left; the reminder falls due 30m later.
		add time.Time
		// delayed: the reminder is delayed to 09:00-09:10 (local time of
		// loc) of the day of release; zero: it is not delayed.
		release time.Time
		loc     *time.Location
		// morning happens at 08:00 Madrid time on the day after add.
		morning func(h *harness)
		want    result
	}{
		{
			name: "22:00 abandonment reminded the next morning", policy: madridPolicy(""), journey: cartJourney,
			add: at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			want: result{action: ActSend},
		},
		{
			name: "a purchase at 08:00 ends the journey", policy: madridPolicy(""), journey: cartJourney,
			add: at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			morning: func(h *harness) { h.track("ana", "Order Completed", nil) },
			want:    result{},
		},
		{
			name: "a purchase at 08:00 reaches the goal", policy: madridPolicy(""), journey: cartGoalJourney,
			add: at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			morning: func(h *harness) { h.track("ana", "Order Completed", nil) },
			want:    result{action: ActSuppressed, reason: "goal: reached while the send was delayed"},
		},
		{
			name: "a suppression at release", policy: madridPolicy(""), journey: strings.Replace(cartGoalJourney, "goal:\n  event: Order Completed", "goal:\n  event: Goal Never Sent", 1),
			add: at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			morning: func(h *harness) { h.track("ana", "Order Completed", nil) },
			want:    result{action: ActSuppressed, reason: "suppression: after_purchase"},
		},
		{
			name: "consent withdrawn before release", policy: madridPolicy(""), journey: cartJourney,
			add: at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			morning: func(h *harness) {
				h.ingest(&profiles.Event{Type: profiles.TypeTrack, UserID: "ana", Event: profiles.EventConsentUpdated, Properties: map[string]any{"email": false}})
			},
			want: result{action: ActSuppressed, reason: "consent: no email consent"},
		},
		{
			name: "skip in the policies", policy: madridPolicy("  on_quiet_hours: skip\n"), journey: cartJourney,
			add:  at(2026, 11, 20, 21, 30),
			want: result{action: ActSuppressed, reason: "quiet_hours: 21:00-09:00"},
		},
		{
			name: "skip on the step", policy: madridPolicy(""),
			journey: strings.Replace(cartJourney, "template: cart_reminder}", "template: cart_reminder, on_quiet_hours: skip}", 1),
			add:     at(2026, 11, 20, 21, 30),
			want:    result{action: ActSuppressed, reason: "quiet_hours: 21:00-09:00"},
		},
		{
			name: "delay on the step over skip in the policies", policy: madridPolicy("  on_quiet_hours: skip\n"),
			journey: strings.Replace(cartJourney, "template: cart_reminder}", "template: cart_reminder, on_quiet_hours: delay}", 1),
			add:     at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			want: result{action: ActSend},
		},
		{
			name: "past max_delay in the policies", policy: madridPolicy("  max_delay: 6h\n"), journey: cartJourney,
			add:  at(2026, 11, 20, 21, 30),
			want: result{action: ActSuppressed, reason: "max_delay: quiet_hours: 21:00-09:00 would wait past 6h"},
		},
		{
			name: "max_delay on the step", policy: madridPolicy("  max_delay: 1h\n"),
			journey: strings.Replace(cartJourney, "template: cart_reminder}", "template: cart_reminder, max_delay: 12h}", 1),
			add:     at(2026, 11, 20, 21, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			want: result{action: ActSend},
		},
		{
			name: "at 03:00 the same morning", policy: madridPolicy(""), journey: cartJourney,
			add: at(2026, 11, 21, 2, 30), release: at(2026, 11, 21, 9, 0), loc: madrid,
			want: result{action: ActSend},
		},
		{
			name: "the person's time zone", policy: madridPolicy(""), journey: cartJourney,
			traits: map[string]any{"timezone": "America/New_York"},
			// 04:30 in Madrid is 22:30 in New York.
			add: at(2026, 11, 21, 4, 30), release: time.Date(2026, 11, 21, 9, 0, 0, 0, newYork), loc: newYork,
			want: result{action: ActSend},
		},
		{
			// The night of 28-29 March 2026 is an hour shorter in Madrid:
			// 09:00 is 07:00 UTC, not 08:00.
			name: "spring forward", policy: madridPolicy(""), journey: cartJourney,
			add: at(2026, 3, 28, 21, 30), release: at(2026, 3, 29, 9, 0), loc: madrid,
			want: result{action: ActSend},
		},
		{
			// The night of 24-25 October 2026 is an hour longer.
			name: "fall back", policy: madridPolicy(""), journey: cartJourney,
			add: at(2026, 10, 24, 21, 30), release: at(2026, 10, 25, 9, 0), loc: madrid,
			want: result{action: ActSend},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.policy, map[string]string{"cart.yaml": tc.journey})
			h.clock.Set(tc.add.Add(-time.Hour))
			traits := map[string]any{"consent": map[string]any{"email": true}}
			for k, v := range tc.traits {
				traits[k] = v
			}
			pid := h.identify("ana", traits)
			h.clock.Set(tc.add)
			h.track("ana", "Product Added", map[string]any{"cart_id": "c1"})
			due := tc.add.Add(30 * time.Minute)
			h.fireUntil(due)

			delayed := h.actions(ActDelayed, pid)
			var until time.Time
			if tc.release.IsZero() {
				if len(delayed) != 0 {
					t.Fatalf("delayed: %s", describe(delayed))
				}
			} else {
				d := only(t, "delayed", delayed)
				if d.Step != "remind" || d.Channel != "email" || !d.At.Equal(due) || dm(d)["reason"] != "quiet_hours: 21:00-09:00" || dm(d)["template"] != "cart_reminder" {
					t.Errorf("delayed = %+v", d)
				}
				var err error
				if until, err = time.Parse(time.RFC3339, fmt.Sprint(dm(d)["until"])); err != nil {
					t.Fatalf("until: %v", err)
				}
				// 09:00 to 09:10 local time, whatever the offset from UTC.
				if until.Before(tc.release) || !until.Before(tc.release.Add(DefaultReleaseSpread)) {
					t.Errorf("until %s (%s local), want from %s to 10 minutes after", until.UTC().Format(time.RFC3339), until.In(tc.loc).Format("2006-01-02 15:04:05 MST"), tc.release.Format("2006-01-02 15:04 MST"))
				}
				if v := h.instances(pid); len(v) != 1 || v[0].Step != "remind" || !v[0].WaitingUntil.Equal(until) {
					t.Errorf("instances = %+v, want waiting at remind until %s", v, until)
				}
				if n := h.count("cart", "remind", "delayed"); n != 1 {
					t.Errorf("delayed count = %d", n)
				}
				if len(h.drain()) != 0 {
					t.Error("something was delivered before the release")
				}
			}
			if tc.morning != nil {
				h.fireUntil(time.Date(tc.add.Year(), tc.add.Month(), tc.add.Day()+1, 8, 0, 0, 0, madrid))
				tc.morning(h)
			}
			h.fireUntil(tc.add.Add(48 * time.Hour))
			h.noTimers()

			sent := h.drain()
			var final []Action
			for _, a := range h.actions("", pid) {
				if a.Step == "remind" && (a.Action == ActSend || a.Action == ActSuppressed) {
					final = append(final, a)
				}
			}
			switch tc.want.action {
			case "":
				if len(final) != 0 || len(sent) != 0 {
					t.Errorf("the reminder was not cancelled: %s %s", describe(final), describe(sent))
				}
				if exit := h.actions(ActExit, pid); len(exit) != 1 || dm(exit[0])["reason"] != "exit_when: Order Completed" {
					t.Errorf("exit = %s", describe(exit))
				}
			case ActSend:
				a := only(t, "send", final)
				if a.Action != ActSend {
					t.Fatalf("final = %+v", a)
				}
				if !until.IsZero() && !a.At.Equal(until) {
					t.Errorf("sent at %s, want the release %s", a.At, until)
				}
				if d := only(t, "delivered", sent); d.Key != a.Key || d.Step != "remind" {
					t.Errorf("delivered %+v, want %+v", d, a)
				}
			case ActSuppressed:
				a := only(t, "suppressed", final)
				if a.Action != ActSuppressed || !strings.HasPrefix(fmt.Sprint(dm(a)["reason"]), tc.want.reason) {
					t.Errorf("final = %+v, want suppressed with %q", a, tc.want.reason)
				}
				if len(sent) != 0 {
					t.Errorf("delivered %s", describe(sent))
				}
			}
			if n := h.count("cart", "remind", "waiting"); n != 0 {
				t.Errorf("waiting count = %d after the end", n)
			}
		})
	}
}

// TestDelaySurvivesRestart: a delayed send is a timer in the bbolt file;
// a restart in the night neither loses nor doubles it.
func TestDelaySurvivesRestart(t *testing.T) {
	h := newHarness(t, madridPolicy(""), map[string]string{"cart.yaml": cartJourney})
	night := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC) // 22:00 in Madrid
	h.clock.Set(night.Add(-time.Hour))
	pid := h.identify("ana", map[string]any{"consent": map[string]any{"email": true}})
	h.clock.Set(night.Add(-30 * time.Minute))
	h.track("ana", "Product Added", nil)
	h.fireUntil(night)
	only(t, "delayed", h.actions(ActDelayed, pid))

	h.restart()
	due, ok := h.engine.NextDue()
	if !ok || due.Before(time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)) || !due.Before(time.Date(2026, 11, 21, 8, 10, 0, 0, time.UTC)) {
		t.Fatalf("after the restart NextDue = %s %v, want 09:00-09:10 Madrid time", due, ok)
	}
	h.restart() // twice: nothing is re-armed or lost on open
	h.fireUntil(night.Add(24 * time.Hour))
	if a := only(t, "send", h.actions(ActSend, pid)); !a.At.Equal(due) {
		t.Errorf("sent at %s, want %s", a.At, due)
	}
	if got := h.drain(); len(got) != 1 {
		t.Errorf("delivered %s, want the reminder once", describe(got))
	}
	h.noTimers()
}

// TestCapDelay: with on_cap: delay, a send over a frequency cap goes when
// the oldest send of the window ages out; max_delay still bounds it.
func TestCapDelay(t *testing.T) {
	const capped = `
policies:
  timezone: UTC
  consent_required: []
  frequency_caps:
    - {channel: email, max: 2, per: 24h}
  on_cap: delay
`
	t.Run("released when the oldest send ages out", func(t *testing.T) {
		h := newHarness(t, capped, map[string]string{"promo.yaml": policyJourney})
		var pid string
		for i := range 3 {
			h.clock.Set(t0.Add(time.Duration(i) * time.Hour))
			pid = h.track("ana", "Product Added", nil)
		}
		if n := len(h.drain()); n != 2 {
			t.Fatalf("sent %d at once, want 2", n)
		}
		d := only(t, "delayed", h.actions(ActDelayed, pid))
		want := t0.Add(24 * time.Hour) // the first send, a day on
		if dm(d)["until"] != want.Format(time.RFC3339) || dm(d)["reason"] != "frequency_cap: 2 email per 24h0m0s" {
			t.Errorf("delayed = %+v, want until %s", d, want)
		}
		h.fireUntil(want.Add(-time.Second))
		if got := h.drain(); len(got) != 0 {
			t.Fatalf("released early: %s", describe(got))
		}
		h.fireUntil(want)
		if a := only(t, "released", h.drain()); a.Action != ActSend || !a.At.Equal(want) {
			t.Errorf("released %+v", a)
		}
		// Now the second and the released send are the window: a fourth
		// waits for the second to age out.
		h.clock.Set(want.Add(time.Minute))
		h.track("ana", "Product Added", nil)
		ds := h.actions(ActDelayed, pid)
		if len(ds) != 2 || dm(ds[1])["until"] != t0.Add(25*time.Hour).Format(time.RFC3339) {
			t.Errorf("second delay: %s", describe(ds))
		}
	})
	t.Run("skip is the default", func(t *testing.T) {
		h := newHarness(t, strings.Replace(capped, "  on_cap: delay\n", "", 1), map[string]string{"promo.yaml": policyJourney})
		var pid string
		for i := range 3 {
			h.clock.Set(t0.Add(time.Duration(i) * time.Minute))
			pid = h.track("ana", "Product Added", nil)
		}
		if n := len(h.actions(ActDelayed, pid)); n != 0 {
			t.Errorf("%d delayed", n)
		}
		if s := only(t, "suppressed", h.actions(ActSuppressed, pid)); dm(s)["reason"] != "frequency_cap: 2 email per 24h0m0s" {
			t.Errorf("suppressed = %+v", s)
		}
	})
	t.Run("max_delay", func(t *testing.T) {
		h := newHarness(t, capped+"  max_delay: 12h\n", map[string]string{"promo.yaml": policyJourney})
		var pid string
		for i := range 3 {
			h.clock.Set(t0.Add(time.Duration(i) * time.Minute))
			pid = h.track("ana", "Product Added", nil)
		}
		if s := only(t, "suppressed", h.actions(ActSuppressed, pid)); dm(s)["reason"] != "max_delay: frequency_cap: 2 email per 24h0m0s would wait past 12h" {
			t.Errorf("suppressed = %+v", s)
		}
		h.noTimers()
	})
	t.Run("a release in quiet hours waits for the morning", func(t *testing.T) {
		pol := strings.NewReplacer("per: 24h", "per: 12h", "  on_cap: delay\n", "  on_cap: delay\n  quiet_hours: {start: \"21:00\", end: \"09:00\", release_spread: 0s}\n").Replace(capped)
		h := newHarness(t, pol, map[string]string{"promo.yaml": policyJourney})
		var pid string
		for i := range 3 {
			h.clock.Set(t0.Add(time.Duration(i) * time.Minute))
			pid = h.track("ana", "Product Added", nil)
		}
		h.fireUntil(t0.Add(48 * time.Hour))
		ds := h.actions(ActDelayed, pid)
		// 12h after the first send is 22:00: quiet, so the next 09:00.
		if len(ds) != 2 || dm(ds[0])["until"] != "2026-03-02T22:00:00Z" || dm(ds[1])["until"] != "2026-03-03T09:00:00Z" ||
			dm(ds[1])["reason"] != "quiet_hours: 21:00-09:00" {
			t.Errorf("delays: %s", describe(ds))
		}
		if a := h.actions(ActSend, pid); len(a) != 3 || !a[2].At.Equal(time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)) {
			t.Errorf("sends: %s", describe(a))
		}
	})
}

// TestReleaseSpread: a person's release is the same every night, within
// the spread; people are spread over it.
func TestReleaseSpread(t *testing.T) {
	madrid, _ := time.LoadLocation("Europe/Madrid")
	q := &QuietHours{Start: "21:00", End: "09:00", ReleaseSpread: 10 * time.Minute}
	night := time.Date(2026, 11, 20, 22, 0, 0, 0, madrid)
	end := time.Date(2026, 11, 21, 9, 0, 0, 0, madrid)
	seen := map[time.Duration]bool{}
	for i := range 50 {
		id := fmt.Sprintf("%024x", i)
		r := q.release(night, madrid, id)
		if r.Before(end) || !r.Before(end.Add(q.ReleaseSpread)) {
			t.Fatalf("%s released at %s", id, r.In(madrid))
		}
		if again := q.release(night.Add(time.Hour), madrid, id); !again.Equal(r) {
			t.Errorf("%s: %s then %s", id, r, again)
		}
		seen[r.Sub(end)] = true
	}
	if len(seen) < 40 {
		t.Errorf("50 people released at %d distinct times", len(seen))
	}
	q.ReleaseSpread = 0
	if r := q.release(night, madrid, "x"); !r.Equal(end) {
		t.Errorf("no spread: %s, want %s", r, end)
	}
}

// TestDelayParseErrors: a bad on_quiet_hours, on_cap, max_delay or
// release_spread is reported where it is written.
func TestDelayParseErrors(t *testing.T) {
	env, known := parseEnv(t)
	t.Run("policies", func(t *testing.T) {
		src := `policies:
  quiet_hours: {start: "21:00", end: "09:00", release_spread: 13h}
  on_quiet_hours: later
  on_cap: drop
  max_delay: 0s
`
		_, err := ParsePolicy("policies.yaml", []byte(src), env)
		want := `policies.yaml:2:63: quiet_hours.release_spread: want a duration from 0 to less than the 12h between the end and the start of quiet hours, got "13h"
policies.yaml:3:19: on_quiet_hours: want delay or skip, got "later"
policies.yaml:4:11: on_cap: want delay or skip, got "drop"
policies.yaml:5:14: max_delay: want a positive duration, got "0s"`
		if err == nil || err.Error() != want {
			t.Errorf("errors:\n%v\nwant:\n%s", err, want)
		}
		if _, err := ParsePolicy("p.yaml", []byte("policies:\n  max_delay: soon\n"), env); err == nil || err.Error() != `p.yaml:2:14: max_delay: want a duration such as 90d, 24h or 30m, got "soon"` {
			t.Errorf("max_delay: soon: %v", err)
		}
	})
	t.Run("send step", func(t *testing.T) {
		src := `id: j
trigger: {event: Product Added}
steps:
  - id: hello
    send: {channel: email, template: hi, on_quiet_hours: never, on_cap: wait, max_delay: -1h, colour: red}
`
		_, err := Parse("j.yaml", []byte(src), env, known)
		want := `j.yaml:5:58: send.on_quiet_hours: want delay or skip, got "never"
j.yaml:5:73: send.on_cap: want delay or skip, got "wait"
j.yaml:5:90: send.max_delay: want a positive duration, got "-1h"
j.yaml:5:95: send: unknown field "colour": want channel, template, on_quiet_hours, on_cap, max_delay, at, within or fallback`
		if err == nil || err.Error() != want {
			t.Errorf("errors:\n%v\nwant:\n%s", err, want)
		}
	})
}
