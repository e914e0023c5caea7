package journeys

// Send-time policy: consent, quiet hours, suppressions, priorities and
// frequency caps, checked against the send records of a person.

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/rules"
)

// consent says why a channel may not be used for the person ("" if it may).
func (r *run) consent(pv *rules.ProfileView, channel string) string {
	purpose := purposeOf(channel)
	if purpose == "" || !slices.Contains(r.set.Policy.ConsentRequired, purpose) {
		return ""
	}
	if !pv.Consent[purpose] {
		return "consent: no " + purpose + " consent"
	}
	return ""
}

// unverifiedAddress says why a send may not go to the person's addresses
// ("" if it may): under unverified_addresses: hold, every address of the
// channel's kind came only from unverified client events.
func (r *run) unverifiedAddress(p *profiles.Profile, channel string) string {
	if r.set.Policy.UnverifiedAddresses != HoldMode {
		return ""
	}
	var kind string
	switch channel {
	case "email":
		kind = profiles.KindEmail
	case "sms":
		kind = profiles.KindPhone
	default:
		return ""
	}
	if all, verified := p.Addresses(kind); len(all) > 0 && verified == 0 {
		return ReasonUnverifiedAddress
	}
	return ""
}

// ReasonUnverifiedAddress is why a send to an address only unverified
// client events gave is held back.
const ReasonUnverifiedAddress = "unverified_address: only unverified client events gave this address; a server source or a verified identify confirms it"

// policy applies consent, quiet hours, suppressions, priorities and caps
// to a send; it returns why the send is held back (a zero hold: it may go).
//
// A send that may go says, in passed, each policy it passed: the history
// of the person shows it (history.go).
func (r *run) policy(p *profiles.Profile, pv *rules.ProfileView, j *Journey, channel string) hold {
	pol := r.set.Policy
	if reason := r.consent(pv, channel); reason != "" {
		return hold{reason: reason}
	}
	if reason := r.unverifiedAddress(p, channel); reason != "" {
		return hold{reason: reason}
	}
	var passed []string
	if purpose := purposeOf(channel); purpose != "" && slices.Contains(pol.ConsentRequired, purpose) {
		passed = append(passed, "consent: "+purpose+" granted")
	}
	if pol.UnverifiedAddresses == HoldMode && (channel == "email" || channel == "sms") {
		passed = append(passed, "unverified_addresses: the address is confirmed")
	}
	if j.Category == "transactional" {
		return hold{passed: append(passed, "transactional: quiet hours, suppressions, caps and priority do not apply")}
	}
	loc := pol.location(pv.Traits)
	if pol.Quiet.holds(channel, r.now.In(loc)) {
		return hold{reason: fmt.Sprintf("quiet_hours: %s-%s", pol.Quiet.Start, pol.Quiet.End), kind: holdQuiet,
			until: pol.Quiet.release(r.now, loc, p.ID)}
	} else if pol.Quiet != nil {
		passed = append(passed, fmt.Sprintf("quiet_hours: %s %s is outside %s-%s", r.now.In(loc).Format("15:04"), loc, pol.Quiet.Start, pol.Quiet.End))
	}
	for _, s := range pol.Suppress {
		if r.eval(s.When, &rules.Input{Profile: pv, Now: r.now}, j, "", "policies.suppress."+s.Name+".when") {
			return hold{reason: "suppression: " + s.Name}
		}
		passed = append(passed, "suppression: "+s.Name+" does not apply")
	}
	sends := r.tx.Bucket(bucketSends).Cursor()
	for _, c := range pol.Caps {
		if c.Channel != "any" && c.Channel != channel {
			continue
		}
		n := r.sendsSince(sends, p.ID, c.Channel, r.now.Add(-c.Per), nil)
		if n >= c.Max {
			return hold{reason: "frequency_cap: " + c.String(), kind: holdCap, until: r.capRelease(sends, p.ID, c)}
		}
		passed = append(passed, fmt.Sprintf("frequency_cap: %s, %d sent before", c, n))
	}
	if pol.PriorityWindow > 0 {
		higher := func(other string) bool {
			oj := r.set.Journey(other)
			return oj != nil && oj.ID != j.ID && oj.Priority > j.Priority
		}
		if n := r.sendsSince(sends, p.ID, channel, r.now.Add(-pol.PriorityWindow), higher); n > 0 {
			return hold{reason: "priority: a journey of higher priority sent on " + channel}
		}
		passed = append(passed, "priority: no journey of higher priority sent on "+channel+" within "+fmtDuration(pol.PriorityWindow))
	}
	return hold{passed: passed}
}

// sendsSince counts a person's sends on a channel ("any": all) after since,
// by journeys match accepts (nil: all).
func (r *run) sendsSince(c *bbolt.Cursor, profileID, channel string, since time.Time, match func(journey string) bool) int {
	if channel != "any" {
		return countSince(c, []byte(profileID+"\x00"+channel+"\x00"), since, match)
	}
	// Every channel of the person: seek into each channel's records at
	// since, then on to the next channel, so a person's old sends are
	// never read.
	person := []byte(profileID + "\x00")
	n := 0
	for k, _ := c.Seek(person); k != nil && bytes.HasPrefix(k, person); {
		ch, _, ok := bytes.Cut(k[len(person):], []byte{0})
		if !ok {
			k, _ = c.Next()
			continue
		}
		prefix := append(bytes.Clone(person), ch...)
		prefix = append(prefix, 0)
		n += countSince(c, prefix, since, match)
		// Past the last possible key of this channel.
		k, _ = c.Seek(append(prefix[:len(prefix)-1:len(prefix)-1], 1))
	}
	return n
}

// countSince counts the send records under prefix made after since that
// match, reading only those.
func countSince(c *bbolt.Cursor, prefix []byte, since time.Time, match func(journey string) bool) int {
	from := append(bytes.Clone(prefix), u64(uint64(max(since.UnixNano()+1, 0)))...)
	n := 0
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) == len(prefix)+16 && (match == nil || match(string(v))) {
			n++
		}
	}
	return n
}

// recordSend notes a send for caps and priorities. The sequence keeps
// sends made at the same instant (two journeys answering one event) apart.
func (r *run) recordSend(profileID, channel, journey string) error {
	b := r.tx.Bucket(bucketSends)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	k := append([]byte(profileID+"\x00"+channel+"\x00"), u64(uint64(r.now.UnixNano()))...)
	return b.Put(append(k, u64(seq)...), []byte(journey))
}
