package journeys

// Best time to send: a send step with `at: best_time` goes at the hour of
// the person's local day when they most often open or click, learned as
// their engagement events are applied, within the step's window.
//
// What is learned is 24 counters a person, one per local hour, kept in a
// sidecar beside the profile and updated in the commit of each Email
// Opened, Email Link Clicked and Application Opened: choosing a time reads
// one small record, never the person's events. The chosen time is a
// delayed send (delay.go) whose timer is the one quiet hours use; at the
// chosen time every policy applies as to any send.

import (
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
	"gopkg.in/yaml.v3"

	"cartera/internal/codec"
	"cartera/profiles"
	"cartera/rules"
)

// Send-time choices of a send step (its `at`).
const (
	// AtBestTime sends at the person's best hour within the step's window.
	AtBestTime = "best_time"
)

// Best-time settings.
const (
	// DefaultBestTimeWithin is the window of `at: best_time` without
	// `within`.
	DefaultBestTimeWithin = 24 * time.Hour
	// DefaultBestTimeFallback is the local hour for people with no
	// engagement learned yet, when the step sets no `fallback`.
	DefaultBestTimeFallback = 10
	// sendHoursCap is where a counter stops: when one reaches it, every
	// counter is halved, so that a person's recent habits outweigh old
	// ones and a record stays one byte an hour.
	sendHoursCap = 255
)

// sidecarSendHours names a person's engagement histogram among their
// sidecars: Format1, then 24 bytes, the (decayed) count of engagement
// events in each local hour 00 to 23.
const sidecarSendHours = "t"

// engagementEvents are the events a best time is learned from.
var engagementEvents = []string{"Email Opened", "Email Link Clicked", "Application Opened"}

// sendHours is a person's engagement by local hour of the day.
type sendHours [24]uint8

func decodeSendHours(v []byte) (sendHours, error) {
	var h sendHours
	if len(v) != 25 || v[0] != codec.Format1 {
		return h, fmt.Errorf("send hours: %d-byte record of an unknown format", len(v))
	}
	copy(h[:], v[1:])
	return h, nil
}

func (h *sendHours) encode() []byte { return append([]byte{codec.Format1}, h[:]...) }

// add counts n events at hour, halving every counter when one would pass
// the cap.
func (h *sendHours) add(hour int, n int) {
	for range n {
		if h[hour] == sendHoursCap {
			for i := range h {
				h[i] /= 2
			}
		}
		h[hour]++
	}
}

func (h *sendHours) total() int {
	n := 0
	for _, c := range h {
		n += int(c)
	}
	return n
}

// readSendHours returns a person's histogram (zero: none yet).
func (r *run) readSendHours(profileID string) (sendHours, error) {
	sc, err := r.sidecars()
	if err != nil {
		return sendHours{}, err
	}
	v := sc.Get(profileID, sidecarSendHours)
	if v == nil {
		return sendHours{}, nil
	}
	h, err := decodeSendHours(v)
	if err != nil {
		return sendHours{}, fmt.Errorf("best time of %s: %w", profileID, err)
	}
	return h, nil
}

// learnSendHour counts an engagement event at its local hour: the hour
// of its timestamp (when the person opened, not when Cartera heard of
// it) in the person's time zone, else the policies'.
func (r *run) learnSendHour(p *profiles.Profile, ev *profiles.Event, name string, pv *rules.ProfileView) error {
	if !slices.Contains(engagementEvents, name) {
		return nil
	}
	at := ev.Timestamp
	if at.IsZero() {
		at = r.now
	}
	h, err := r.readSendHours(p.ID)
	if err != nil {
		return err
	}
	h.add(at.In(r.set.Policy.location(pv.Traits)).Hour(), 1)
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	return sc.Put(p.ID, sidecarSendHours, h.encode())
}

// mergeSendHours adds a merged-away profile's histogram to the
// survivor's: one person's habits, seen under two profiles.
func (r *run) mergeSendHours(survivorID, loserID string) error {
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	if sc.Get(loserID, sidecarSendHours) == nil {
		return nil
	}
	lost, err := r.readSendHours(loserID)
	if err != nil {
		return err
	}
	h, err := r.readSendHours(survivorID)
	if err != nil {
		return err
	}
	for hour, n := range lost {
		h.add(hour, int(n))
	}
	if err := sc.Delete(loserID, sidecarSendHours); err != nil {
		return err
	}
	return sc.Put(survivorID, sidecarSendHours, h.encode())
}

// BestTimeDetail says when a best-time send was timed for and why.
type BestTimeDetail struct {
	// At is the local hour chosen ("19:00") in Zone.
	At string `json:"at"`
	// Events is how many engagement events the person's habits were
	// learned from (recent ones weigh more; 0 for the fallback).
	Events int `json:"events"`
	// Source is "learned" (the hour they engage most), "fallback" (no
	// engagement learned yet: the step's fallback hour) or "now" (the
	// window reaches neither: the send goes at once).
	Source string `json:"source"`
	// Zone is the person's time zone (their timezone trait, else the
	// policies').
	Zone string `json:"zone"`
}

// Sources of a best time.
const (
	BestTimeLearned  = "learned"
	BestTimeFallback = "fallback"
	BestTimeNow      = "now"
)

// chooseSendTime is when, from now to now+within, the person's local clock
// is in the hour they engage most (ties: the soonest); with nothing
// learned, in the fallback hour. Now counts when its hour is the best; an
// hour the window does not reach is not chosen (with no better hour in
// it, the send goes now). Hours are walked as instants, so a day that
// changes to or from summer time has 23 or 25 of them.
func chooseSendTime(now time.Time, loc *time.Location, h sendHours, fallback int, within time.Duration) (time.Time, BestTimeDetail) {
	total := h.total()
	d := BestTimeDetail{Events: total, Source: BestTimeLearned, Zone: loc.String()}
	score := func(hour int) int { return int(h[hour]) }
	if total == 0 {
		d.Source = BestTimeFallback
		score = func(hour int) int {
			if hour == fallback {
				return 1
			}
			return 0
		}
	}
	local := now.In(loc)
	start := now.Add(-time.Duration(local.Minute())*time.Minute - time.Duration(local.Second())*time.Second - time.Duration(local.Nanosecond()))
	end := now.Add(within)
	best, at, hour := -1, now, local.Hour()
	for slot := start; !slot.After(end); slot = slot.Add(time.Hour) {
		hr := slot.In(loc).Hour()
		if s := score(hr); s > best {
			best, hour = s, hr
			at = maxTime(slot, now)
		}
	}
	if best == 0 {
		d.Source = BestTimeNow
	}
	d.At = fmt.Sprintf("%02d:00", hour)
	return at, d
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendStep runs a send step: at its best time when it asks for one (the
// send is delayed to it, and its timer's release sends it), else now.
func (r *run) sendStep(p *profiles.Profile, pv *rules.ProfileView, j *Journey, in *Instance, s *Step) (next string, wait bool, err error) {
	if s.At != AtBestTime {
		return r.send(p, pv, j, in, s, time.Time{}, nil)
	}
	h, err := r.readSendHours(p.ID)
	if err != nil {
		return "", false, err
	}
	fallback := DefaultBestTimeFallback
	if s.Fallback != "" {
		fallback = minutes(s.Fallback) / 60
	}
	within := s.Within
	if within == 0 {
		within = DefaultBestTimeWithin
	}
	at, d := chooseSendTime(r.now, r.set.Policy.location(pv.Traits), h, fallback, within)
	if !at.After(r.now) {
		return r.send(p, pv, j, in, s, time.Time{}, &d)
	}
	r.count(j.ID, s.ID, "delayed", 1)
	r.act(in, s.ID, ActDelayed, s.Channel, DelayedDetail{BestTime: &d, Reason: AtBestTime, Template: s.Template, Until: at.UTC()})
	// No hold yet: a policy that holds the send at the chosen time
	// counts max_delay from then.
	return "", true, r.setDelay(in, at, time.Time{})
}

// readAt reads a send's at, within and fallback.
func readAt(f *rules.File, s *Step, v *yaml.Node, key string) {
	switch key {
	case "at":
		s.At = f.String(v, "send.at")
		if s.At != AtBestTime {
			f.Errorf(v, "send.at: want %s, got %q", AtBestTime, s.At)
		}
	case "within":
		s.Within = f.Duration(v, "send.within")
		if _, err := rules.ParseDuration(v.Value); err == nil && (s.Within < time.Hour || s.Within > 7*24*time.Hour) {
			f.Errorf(v, "send.within: want a duration from 1h to 7d, got %q", v.Value)
		}
	case "fallback":
		s.Fallback = f.String(v, "send.fallback")
		if t, err := time.Parse("15:04", s.Fallback); err != nil || t.Minute() != 0 {
			f.Errorf(v, "send.fallback: want a whole local hour HH:00, got %q", s.Fallback)
		}
	}
}

// checkAt reports within or fallback without at: best_time, and a best
// time on a channel with no person to read it.
func checkAt(f *rules.File, s *Step, v *yaml.Node) {
	if s.At == "" && (s.Within != 0 || s.Fallback != "") {
		f.Errorf(v, "send: within and fallback need at: %s", AtBestTime)
	}
	if s.At == AtBestTime && s.Channel != "" && !slices.Contains([]string{"email", "sms", "push"}, s.Channel) {
		f.Errorf(v, "send.at: %s is for email, sms and push, not %s", AtBestTime, s.Channel)
	}
}

// SendHours returns a person's engagement by local hour, as best times
// read it (all zero: nothing learned yet).
func (e *Engine) SendHours(profileID string) ([24]int, error) {
	var out [24]int
	err := e.db.View(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		v := sc.Get(profileID, sidecarSendHours)
		if v == nil {
			return nil
		}
		h, err := decodeSendHours(v)
		for i, n := range h {
			out[i] = int(n)
		}
		return err
	})
	return out, err
}
