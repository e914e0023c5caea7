package journeys

import (
	"testing"
	"time"

	"cartera/profiles"
)

// TestChooseSendTime: the hour a person engages most, within the window,
// the soonest on a tie; the fallback hour with nothing learned; walked in
// instants, so summer time and half-hour zones come out right. Every
// instant is fixed: nothing here reads the wall clock or the local zone.
func TestChooseSendTime(t *testing.T) {
	madrid, _ := time.LoadLocation("Europe/Madrid")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	at := func(loc *time.Location, y int, m time.Month, d, hh, mm int) time.Time {
		return time.Date(y, m, d, hh, mm, 0, 0, loc)
	}
	hist := func(counts map[int]uint8) sendHours {
		var h sendHours
		for hour, n := range counts {
			h[hour] = n
		}
		return h
	}
	for _, tc := range []struct {
		name     string
		now      time.Time
		loc      *time.Location
		h        sendHours
		fallback int
		within   time.Duration
		want     time.Time
		detail   BestTimeDetail
	}{
		{
			name: "learned, later today", now: at(madrid, 2026, 11, 20, 10, 0), loc: madrid,
			h: hist(map[int]uint8{19: 5, 8: 2}), fallback: 10, within: 24 * time.Hour,
			want: at(madrid, 2026, 11, 20, 19, 0), detail: BestTimeDetail{At: "19:00", Events: 7, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			name: "learned, passed today: tomorrow", now: at(madrid, 2026, 11, 20, 10, 0), loc: madrid,
			h: hist(map[int]uint8{8: 2}), fallback: 10, within: 24 * time.Hour,
			want: at(madrid, 2026, 11, 21, 8, 0), detail: BestTimeDetail{At: "08:00", Events: 2, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			name: "in the best hour already: now", now: at(madrid, 2026, 11, 20, 10, 25), loc: madrid,
			h: hist(map[int]uint8{10: 3, 19: 2}), fallback: 10, within: 24 * time.Hour,
			want: at(madrid, 2026, 11, 20, 10, 25), detail: BestTimeDetail{At: "10:00", Events: 5, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			name: "a tie: the soonest", now: at(madrid, 2026, 11, 20, 10, 0), loc: madrid,
			h: hist(map[int]uint8{9: 3, 20: 3}), fallback: 10, within: 24 * time.Hour,
			want: at(madrid, 2026, 11, 20, 20, 0), detail: BestTimeDetail{At: "20:00", Events: 6, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			name: "nothing learned: the fallback hour", now: at(madrid, 2026, 11, 20, 11, 0), loc: madrid,
			fallback: 10, within: 24 * time.Hour,
			want: at(madrid, 2026, 11, 21, 10, 0), detail: BestTimeDetail{At: "10:00", Events: 0, Source: BestTimeFallback, Zone: "Europe/Madrid"},
		},
		{
			name: "a short window: the best hour it reaches", now: at(madrid, 2026, 11, 20, 10, 0), loc: madrid,
			h: hist(map[int]uint8{19: 5, 12: 1}), fallback: 10, within: 3 * time.Hour,
			want: at(madrid, 2026, 11, 20, 12, 0), detail: BestTimeDetail{At: "12:00", Events: 6, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			name: "the fallback out of the window: now", now: at(madrid, 2026, 11, 20, 11, 0), loc: madrid,
			fallback: 10, within: 6 * time.Hour,
			want: at(madrid, 2026, 11, 20, 11, 0), detail: BestTimeDetail{At: "11:00", Events: 0, Source: BestTimeNow, Zone: "Europe/Madrid"},
		},
		{
			name: "no learned hour in the window: now", now: at(madrid, 2026, 11, 20, 10, 0), loc: madrid,
			h: hist(map[int]uint8{19: 5}), fallback: 10, within: 2 * time.Hour,
			want: at(madrid, 2026, 11, 20, 10, 0), detail: BestTimeDetail{At: "10:00", Events: 5, Source: BestTimeNow, Zone: "Europe/Madrid"},
		},
		{
			// 28-29 March 2026: Madrid skips 02:00-03:00; 09:00 is 07:00 UTC.
			name: "spring forward", now: at(madrid, 2026, 3, 28, 22, 0), loc: madrid,
			h: hist(map[int]uint8{9: 1}), fallback: 10, within: 24 * time.Hour,
			want: time.Date(2026, 3, 29, 7, 0, 0, 0, time.UTC), detail: BestTimeDetail{At: "09:00", Events: 1, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			// 24-25 October 2026: 02:00-03:00 twice; 09:00 is 08:00 UTC.
			name: "fall back", now: at(madrid, 2026, 10, 24, 22, 0), loc: madrid,
			h: hist(map[int]uint8{9: 1}), fallback: 10, within: 24 * time.Hour,
			want: time.Date(2026, 10, 25, 8, 0, 0, 0, time.UTC), detail: BestTimeDetail{At: "09:00", Events: 1, Source: BestTimeLearned, Zone: "Europe/Madrid"},
		},
		{
			name: "a half-hour zone", now: at(kolkata, 2026, 11, 20, 10, 10), loc: kolkata,
			h: hist(map[int]uint8{14: 1}), fallback: 10, within: 24 * time.Hour,
			want: time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC), detail: BestTimeDetail{At: "14:00", Events: 1, Source: BestTimeLearned, Zone: "Asia/Kolkata"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, d := chooseSendTime(tc.now, tc.loc, tc.h, tc.fallback, tc.within)
			if !got.Equal(tc.want) || d != tc.detail {
				t.Errorf("chose %s %+v, want %s %+v", got.In(tc.loc).Format(time.RFC3339), d, tc.want.In(tc.loc).Format(time.RFC3339), tc.detail)
			}
		})
	}
}

// TestSendHoursDecay: a counter stops at 255; the next event halves every
// counter first, so the record stays 25 bytes and recent habits win.
func TestSendHoursDecay(t *testing.T) {
	var h sendHours
	h.add(3, 255)
	h.add(20, 10)
	h.add(3, 1)
	if h[3] != 128 || h[20] != 5 {
		t.Errorf("after the cap: hour 3 = %d, hour 20 = %d, want 128 and 5", h[3], h[20])
	}
	v := h.encode()
	back, err := decodeSendHours(v)
	if len(v) != 25 || err != nil || back != h {
		t.Errorf("round trip: %d bytes, %v, %v", len(v), back, err)
	}
	if _, err := decodeSendHours(v[:10]); err == nil {
		t.Error("a short record decoded")
	}
}

// backInStock sends at the person's best time within a day.
const backInStock = `
id: restock
trigger:
  event: Back In Stock
entry:
  reentry: true
goal:
  event: Order Completed
steps:
  - id: tell
    send: {channel: email, template: restock, at: best_time, within: 24h}
`

// welcomeNow sends an email at once on sign-up (to fill a frequency cap).
const welcomeNow = `
id: welcome
trigger:
  event: Signed Up
steps:
  - id: hello
    send: {channel: email, template: welcome}
`

// TestBestTimeSend: the send goes at the local hour the person opened or
// clicked most, learned from their engagement events as they are
// applied; the fallback hour without history; then quiet hours, caps
// and the goal apply at that time as to any send.
func TestBestTimeSend(t *testing.T) {
	madrid, _ := time.LoadLocation("Europe/Madrid")
	newYork, _ := time.LoadLocation("America/New_York")
	day := func(loc *time.Location, d, hh, mm int) time.Time { return time.Date(2026, 11, d, hh, mm, 0, 0, loc) }
	type opened struct {
		event string
		at    time.Time
	}
	evenings := func(loc *time.Location, hh int) []opened {
		return []opened{
			{"Email Opened", day(loc, 16, hh, 5)}, {"Email Link Clicked", day(loc, 16, hh, 6)},
			{"Email Opened", day(loc, 17, hh, 40)}, {"Application Opened", day(loc, 18, hh, 15)},
			{"Application Opened", day(loc, 18, 8, 0)}, // once in the morning
		}
	}
	for _, tc := range []struct {
		name   string
		policy string
		traits map[string]any
		opens  []opened
		// trigger is when Back In Stock comes; between runs (optional)
		// before the best time.
		trigger time.Time
		between func(h *harness)
		// until is the delay's until (zero: sent at once); source and
		// hour what its best_time says.
		until        time.Time
		source, hour string
		events       float64
		// final is the step's last action: a send at sentAt, or
		// suppressed with reason.
		final  string
		sentAt time.Time
		reason string
		// quiet: the final send was delayed by quiet hours, to sentAt
		// plus the person's place in the release spread.
		quiet bool
	}{
		{
			name: "learned evenings", policy: madridPolicy(""), opens: evenings(madrid, 19),
			trigger: day(madrid, 20, 10, 0), until: day(madrid, 20, 19, 0), source: BestTimeLearned, hour: "19:00", events: 5,
			final: ActSend, sentAt: day(madrid, 20, 19, 0),
		},
		{
			name: "no history: the fallback hour", policy: madridPolicy(""),
			trigger: day(madrid, 20, 11, 0), until: day(madrid, 21, 10, 0), source: BestTimeFallback, hour: "10:00",
			final: ActSend, sentAt: day(madrid, 21, 10, 0),
		},
		{
			name: "the person's time zone", policy: madridPolicy(""), traits: map[string]any{"timezone": "America/New_York"},
			opens:   evenings(newYork, 19),
			trigger: day(madrid, 20, 10, 0), until: day(newYork, 20, 19, 0), source: BestTimeLearned, hour: "19:00", events: 5,
			final: ActSend, sentAt: day(newYork, 20, 19, 0),
		},
		{
			name: "in the best hour: at once", policy: madridPolicy(""), opens: evenings(madrid, 19),
			trigger: day(madrid, 20, 19, 30), source: BestTimeLearned, hour: "19:00", events: 5,
			final: ActSend, sentAt: day(madrid, 20, 19, 30),
		},
		{
			// Opens at 23:00, in quiet hours: timed for 23:00, then
			// delayed by quiet hours to 09:0x (the spread) next morning.
			name: "quiet hours still apply", policy: madridPolicy(""), opens: evenings(madrid, 23),
			trigger: day(madrid, 20, 10, 0), until: day(madrid, 20, 23, 0), source: BestTimeLearned, hour: "23:00", events: 5,
			final: ActSend, sentAt: day(madrid, 21, 9, 0), quiet: true,
		},
		{
			// max_delay counts from the best time (23:00 to 09:0x: 10h),
			// not from the trigger (23h).
			name: "max_delay from the best time", policy: madridPolicy("  max_delay: 12h\n"), opens: evenings(madrid, 23),
			trigger: day(madrid, 20, 10, 0), until: day(madrid, 20, 23, 0), source: BestTimeLearned, hour: "23:00", events: 5,
			final: ActSend, sentAt: day(madrid, 21, 9, 0), quiet: true,
		},
		{
			name: "a frequency cap still applies", policy: madridPolicy("  frequency_caps:\n    - {channel: email, max: 1, per: 24h}\n"),
			opens:   evenings(madrid, 19),
			trigger: day(madrid, 20, 10, 0), until: day(madrid, 20, 19, 0), source: BestTimeLearned, hour: "19:00", events: 5,
			between: func(h *harness) { h.track("ana", "Signed Up", nil) },
			final:   ActSuppressed, reason: "frequency_cap: 1 email per 24h0m0s",
		},
		{
			name: "the goal while waiting", policy: madridPolicy(""), opens: evenings(madrid, 19),
			trigger: day(madrid, 20, 10, 0), until: day(madrid, 20, 19, 0), source: BestTimeLearned, hour: "19:00", events: 5,
			between: func(h *harness) { h.track("ana", "Order Completed", nil) },
			final:   ActSuppressed, reason: "goal: reached while the send was delayed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.policy, map[string]string{"restock.yaml": backInStock, "welcome.yaml": welcomeNow})
			h.clock.Set(day(madrid, 15, 12, 0))
			traits := map[string]any{"consent": map[string]any{"email": true}}
			for k, v := range tc.traits {
				traits[k] = v
			}
			pid := h.identify("ana", traits)
			for _, o := range tc.opens {
				h.clock.Set(o.at)
				h.track("ana", o.event, nil)
			}
			if hours, err := h.engine.SendHours(pid); err != nil {
				t.Fatal(err)
			} else if n := len(tc.opens); n > 0 && hours[tc.opens[0].at.Hour()] != n-1 {
				t.Errorf("learned %v, want %d at %02d:00", hours, n-1, tc.opens[0].at.Hour())
			}
			h.clock.Set(tc.trigger)
			h.track("ana", "Back In Stock", nil)
			var bt map[string]any
			if tc.until.IsZero() {
				if d := h.actions(ActDelayed, pid); len(d) != 0 {
					t.Fatalf("delayed: %s", describe(d))
				}
				s := only(t, "send", h.actions(ActSend, pid))
				bt, _ = dm(s)["best_time"].(map[string]any)
			} else {
				d := only(t, "delayed", h.actions(ActDelayed, pid))
				if dm(d)["reason"] != AtBestTime || dm(d)["until"] != tc.until.UTC().Format(time.RFC3339) || !d.At.Equal(tc.trigger) {
					t.Errorf("delayed = %+v, want best_time until %s", d, tc.until.UTC().Format(time.RFC3339))
				}
				if v := h.instances(pid); len(v) != 1 || !v[0].WaitingUntil.Equal(tc.until) {
					t.Errorf("instances = %+v, want waiting until %s", v, tc.until)
				}
				bt, _ = dm(d)["best_time"].(map[string]any)
				if n := len(h.actions(ActSend, pid)); n != 0 {
					t.Errorf("%d sends before the best time", n)
				}
			}
			zone := "Europe/Madrid"
			if tc.traits["timezone"] != nil {
				zone = tc.traits["timezone"].(string)
			}
			if bt["at"] != tc.hour || bt["source"] != tc.source || bt["events"] != tc.events || bt["zone"] != zone {
				t.Errorf("best_time = %v, want %s %s from %v events in %s", bt, tc.hour, tc.source, tc.events, zone)
			}
			if tc.between != nil {
				h.clock.Set(tc.trigger.Add(2 * time.Hour))
				tc.between(h)
			}
			h.fireUntil(tc.trigger.Add(48 * time.Hour))
			h.noTimers()
			var final []Action
			for _, a := range h.actions("", pid) {
				if a.Journey == "restock" && (a.Action == ActSend || a.Action == ActSuppressed) {
					final = append(final, a)
				}
			}
			a := only(t, "final", final)
			switch tc.final {
			case ActSend:
				late := a.At.Sub(tc.sentAt)
				if tc.quiet {
					// 09:00 plus the person's place in the 10-minute spread.
					if late < 0 || late >= DefaultReleaseSpread {
						t.Errorf("sent at %s, want 09:00-09:10 Madrid", a.At.In(madrid))
					}
					if ds := h.actions(ActDelayed, pid); len(ds) != 2 || dm(ds[1])["reason"] != "quiet_hours: 21:00-09:00" {
						t.Errorf("delays: %s", describe(ds))
					}
				} else if a.Action != ActSend || late != 0 {
					t.Errorf("final = %+v, want a send at %s", a, tc.sentAt.UTC())
				}
				delivered := 0
				for _, d := range h.drain() {
					if d.Journey == "restock" {
						delivered++
					}
				}
				if delivered != 1 {
					t.Errorf("delivered %d restock mails, want 1", delivered)
				}
			case ActSuppressed:
				if a.Action != ActSuppressed || !a.At.Equal(tc.until) || dm(a)["reason"] != tc.reason {
					t.Errorf("final = %+v, want suppressed at %s: %s", a, tc.until, tc.reason)
				}
			}
		})
	}
}

// TestBestTimeDurable: the wait for a best time is the delayed-send timer
// in the bbolt file: a restart neither loses nor doubles it.
func TestBestTimeDurable(t *testing.T) {
	madrid, _ := time.LoadLocation("Europe/Madrid")
	h := newHarness(t, madridPolicy(""), map[string]string{"restock.yaml": backInStock})
	h.clock.Set(time.Date(2026, 11, 19, 18, 0, 0, 0, madrid))
	pid := h.identify("ana", map[string]any{"consent": map[string]any{"email": true}})
	h.track("ana", "Email Opened", nil) // 18:00 Madrid
	h.clock.Set(time.Date(2026, 11, 20, 9, 30, 0, 0, madrid))
	h.track("ana", "Back In Stock", nil)
	want := time.Date(2026, 11, 20, 18, 0, 0, 0, madrid)
	h.restart()
	if due, ok := h.engine.NextDue(); !ok || !due.Equal(want) {
		t.Fatalf("after a restart NextDue = %s %v, want %s", due, ok, want.UTC())
	}
	h.restart()
	h.fireUntil(want.Add(24 * time.Hour))
	if a := only(t, "send", h.actions(ActSend, pid)); !a.At.Equal(want) {
		t.Errorf("sent at %s, want %s", a.At, want.UTC())
	}
	if n := len(h.drain()); n != 1 {
		t.Errorf("delivered %d, want 1", n)
	}
}

// TestBestTimeMergeAndErase: a merge adds the habits the merged-away
// profile showed to the survivor's; an erasure forgets them.
func TestBestTimeMergeAndErase(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"restock.yaml": backInStock})
	h.clock.Set(time.Date(2026, 11, 19, 20, 0, 0, 0, time.UTC))
	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Application Opened"}).ProfileID
	h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Application Opened"})
	h.clock.Set(time.Date(2026, 11, 19, 7, 0, 0, 0, time.UTC))
	known := h.track("ana", "Email Opened", nil)
	res := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	if len(res.Merged) != 1 {
		t.Fatalf("merge result = %+v (profiles %s, %s)", res, anon, known)
	}
	hours, err := h.engine.SendHours(res.ProfileID)
	if err != nil || hours[20] != 2 || hours[7] != 1 {
		t.Errorf("survivor's hours = %v, %v; want 2 at 20:00 and 1 at 07:00", hours, err)
	}
	if gone, _ := h.engine.SendHours(res.Merged[0]); gone != [24]int{} {
		t.Errorf("the merged-away profile keeps %v", gone)
	}
	h.clock.Set(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	h.track("ana", "Back In Stock", nil)
	if d := only(t, "delayed", h.actions(ActDelayed, res.ProfileID)); dm(d)["until"] != "2026-11-20T20:00:00Z" {
		t.Errorf("delayed = %+v, want 20:00, the merged habit", d)
	}
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"}, false); err != nil {
		t.Fatal(err)
	}
	if hours, _ := h.engine.SendHours(res.ProfileID); hours != [24]int{} {
		t.Errorf("after the erasure: %v", hours)
	}
}

// TestBestTimeParse: at, within and fallback are checked where they are
// written.
func TestBestTimeParse(t *testing.T) {
	env, known := parseEnv(t)
	head := "id: j\ntrigger: {event: Product Added}\nsteps:\n  - id: hello\n    send: "
	for _, tc := range []struct{ send, want string }{
		{"{channel: email, template: hi, at: best_time}", ""},
		{"{channel: sms, template: hi, at: best_time, within: 12h, fallback: \"18:00\"}", ""},
		{"{channel: email, template: hi, at: noon}", `j.yaml:5:46: send.at: want best_time, got "noon"`},
		{"{channel: email, template: hi, at: best_time, within: 30m}", `j.yaml:5:65: send.within: want a duration from 1h to 7d, got "30m"`},
		{"{channel: email, template: hi, at: best_time, within: 8d}", `j.yaml:5:65: send.within: want a duration from 1h to 7d, got "8d"`},
		{"{channel: email, template: hi, at: best_time, within: soon}", `j.yaml:5:65: send.within: want a duration such as 90d, 24h or 30m, got "soon"`},
		{"{channel: email, template: hi, at: best_time, fallback: \"10:30\"}", `j.yaml:5:67: send.fallback: want a whole local hour HH:00, got "10:30"`},
		{"{channel: email, template: hi, within: 24h}", "j.yaml:5:11: send: within and fallback need at: best_time"},
		{"{channel: webhook, template: hi, at: best_time}", "j.yaml:5:11: send.at: best_time is for email, sms and push, not webhook"},
	} {
		t.Run(tc.send, func(t *testing.T) {
			j, err := Parse("j.yaml", []byte(head+tc.send+"\n"), env, known)
			if tc.want == "" {
				if err != nil || j.Step("hello").At != AtBestTime {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
	j, err := Parse("j.yaml", []byte(head+"{channel: sms, template: hi, at: best_time, within: 12h, fallback: \"18:00\"}\n"), env, known)
	if err != nil {
		t.Fatal(err)
	}
	if s := j.Step("hello"); s.Within != 12*time.Hour || s.Fallback != "18:00" {
		t.Errorf("step = %+v", s)
	}
}
