package journeys

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/rules"
)

// holdKind says which policy held a send back: only quiet hours and
// frequency caps may delay one; consent, suppressions and priorities
// always suppress it.
type holdKind int

const (
	holdOther holdKind = iota
	holdQuiet
	holdCap
)

// hold is why a send may not go now ("" reason: it may), and, for quiet
// hours and caps, from when it may.
type hold struct {
	reason string
	kind   holdKind
	until  time.Time
	// passed are the policies a send that may go passed, for its history.
	passed []string
}

// onHold is what a step does when a policy of kind holds its send back,
// and how long it may be delayed (0: no bound).
func (p *Policy) onHold(s *Step, kind holdKind) (mode string, maxDelay time.Duration) {
	switch kind {
	case holdQuiet:
		mode = firstSet(s.OnQuietHours, p.OnQuietHours, DelayMode)
	case holdCap:
		mode = firstSet(s.OnCap, p.OnCap, SkipMode)
	default:
		return SkipMode, 0
	}
	maxDelay = p.MaxDelay
	if s.MaxDelay > 0 {
		maxDelay = s.MaxDelay
	}
	return mode, maxDelay
}

// firstSet returns the first of its arguments that is not empty.
func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// send runs a send step: the policies let it go now, suppress it, or delay
// it to when they allow it — then the instance waits on a timer that
// release ends. since is when the send was first held (zero: it was not);
// bt, the best time the send was timed for now (nil: none).
func (r *run) send(p *profiles.Profile, pv *rules.ProfileView, j *Journey, in *Instance, s *Step, since time.Time, bt *BestTimeDetail) (next string, wait bool, err error) {
	h := r.policy(p, pv, j, s.Channel)
	if h.reason == "" {
		if err := r.recordSend(p.ID, s.Channel, j.ID); err != nil {
			return "", false, err
		}
		r.count(j.ID, s.ID, "sent", 1)
		r.why = sendWhy(h.passed, since)
		err := r.outbox(in, s.ID, ActSend, s.Channel, SendDetail{BestTime: bt, Template: s.Template})
		r.why = ""
		return s.Next, false, err
	}
	reason := h.reason
	if mode, maxDelay := r.set.Policy.onHold(s, h.kind); mode == DelayMode {
		if since.IsZero() {
			since = r.now
		}
		// A release is always later than now, so that a timer cannot fire
		// again within the run that armed it, and on a whole second, as
		// simulate prints it.
		if up := h.until.Truncate(time.Second); up.Before(h.until) {
			h.until = up.Add(time.Second)
		}
		if earliest := r.now.Add(time.Second); h.until.Before(earliest) {
			h.until = earliest.Truncate(time.Second).Add(time.Second)
		}
		if maxDelay == 0 || h.until.Sub(since) <= maxDelay {
			r.count(j.ID, s.ID, "delayed", 1)
			r.act(in, s.ID, ActDelayed, s.Channel, DelayedDetail{BestTime: bt, Reason: reason, Template: s.Template, Until: h.until.UTC()})
			return "", true, r.setDelay(in, h.until, since)
		}
		reason = fmt.Sprintf("max_delay: %s would wait past %s", reason, fmtDuration(maxDelay))
	}
	r.count(j.ID, s.ID, "suppressed", 1)
	r.act(in, s.ID, ActSuppressed, s.Channel, SuppressedDetail{Reason: reason, Template: s.Template})
	return s.Next, false, nil
}

// release runs a delayed send again when its timer fires (the timer is
// already gone): every policy is checked anew, as are the goal (reached
// while the send waited, it is not sent), and consent; exits ended the
// instance, and with it the timer, before.
func (r *run) release(p *profiles.Profile, j *Journey, in *Instance, s *Step, v []byte) error {
	since, converted := decodeDelay(v)
	if in.Converted && !converted {
		r.count(j.ID, s.ID, "suppressed", 1)
		r.act(in, s.ID, ActSuppressed, s.Channel, SuppressedDetail{Reason: "goal: reached while the send was delayed", Template: s.Template})
		return r.advance(p, j, in, s.Next)
	}
	pv, err := r.view(p)
	if err != nil {
		return err
	}
	next, wait, err := r.send(p, pv, j, in, s, since, nil)
	if err != nil {
		return err
	}
	if wait {
		r.count(j.ID, s.ID, "waiting", 1)
		return r.save(in)
	}
	return r.advance(p, j, in, next)
}

// timerDelay is the kind of a delayed send's timer.
const timerDelay = 'd'

// setDelay arms the timer that releases a delayed send at due; its value
// keeps when the send was first held (for max_delay) and whether the
// instance had converted then.
func (r *run) setDelay(in *Instance, due time.Time, since time.Time) error {
	n := int64(0) // zero since: not held by a policy yet (a best time)
	if !since.IsZero() {
		n = max(since.UnixNano(), 1)
	}
	v := append([]byte{timerDelay}, u64(uint64(n))...)
	conv := byte(0)
	if in.Converted {
		conv = 1
	}
	k := timerKey(due, in.ID)
	if err := r.tx.Bucket(bucketTimers).Put(k, append(v, conv)); err != nil {
		return err
	}
	in.Timer = k
	return nil
}

func isDelay(v []byte) bool { return len(v) == 10 && v[0] == timerDelay }

// decodeDelay reads a delayed send's timer value; since is zero for a
// send timed by its best time, which no policy has held yet.
func decodeDelay(v []byte) (since time.Time, converted bool) {
	if n := int64(binary.BigEndian.Uint64(v[1:9])); n != 0 {
		since = time.Unix(0, n)
	}
	return since, v[9] == 1
}

// release is when a send held back at now by quiet hours may go: the end
// of quiet hours in loc (a wall-clock time, so a day that changes to or from
// summer time is counted right), plus the person's offset in the spread.
func (q *QuietHours) release(now time.Time, loc *time.Location, profileID string) time.Time {
	return nextLocal(now, q.End, loc).Add(spreadOffset(profileID, q.ReleaseSpread))
}

// spreadOffset is a person's place in a release spread: whole seconds in
// [0, spread), the same for the person every time.
func spreadOffset(profileID string, spread time.Duration) time.Duration {
	secs := uint64(spread / time.Second)
	if secs == 0 {
		return 0
	}
	h := sha256.Sum256([]byte(profileID))
	return time.Duration(binary.BigEndian.Uint64(h[:8])%secs) * time.Second
}

// capRelease is when a cap the person has reached lets one more send go:
// when enough of the sends in its window age out.
func (r *run) capRelease(c *bbolt.Cursor, profileID string, cp Cap) time.Time {
	prefix := []byte(profileID + "\x00")
	if cp.Channel != "any" {
		prefix = []byte(profileID + "\x00" + cp.Channel + "\x00")
	}
	since := r.now.Add(-cp.Per).UnixNano()
	var at []int64
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) < 16 {
			continue
		}
		if t := int64(binary.BigEndian.Uint64(k[len(k)-16 : len(k)-8])); t > since {
			at = append(at, t)
		}
	}
	if len(at) < cp.Max {
		return r.now
	}
	slices.Sort(at)
	// Sends in the window at t are those after t-Per: once the
	// (len-Max)-th oldest is Per old, Max-1 are left.
	return time.Unix(0, at[len(at)-cp.Max]).Add(cp.Per)
}

// fmtDuration writes a duration as a policy file would (36h, 30m).
func fmtDuration(d time.Duration) string {
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			s = s[:len(s)-len(suffix)+1]
		}
	}
	return s
}
