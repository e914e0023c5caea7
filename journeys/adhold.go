package journeys

// Ad audience holds: a person is in a policy ad audience (on Meta and
// Google) while at least one live journey instance holds them there. Each
// instance that adds them is recorded as a holder; a removal by one
// instance (its step, its exit) takes them out of the platform audience
// only when no other instance holds them. An erasure or lost ads consent
// takes them out at once, whoever holds them.

import (
	"encoding/binary"
	"slices"

	"cartera/profiles"
	"cartera/rules"
)

// holdersVersion starts a journey_ad_members value of instance ids.
// Earlier versions stored the id of the journey that added the person:
// such a value is one holder that no instance names (legacyHolder), which
// the first removal releases, as those versions did.
const holdersVersion = 0x01

// legacyHolder stands for the unnamed holder of an earlier version's value.
const legacyHolder = 0

func decodeHolders(v []byte) []uint64 {
	if v == nil {
		return nil
	}
	if len(v) == 0 || v[0] != holdersVersion || (len(v)-1)%8 != 0 {
		return []uint64{legacyHolder}
	}
	ids := make([]uint64, 0, (len(v)-1)/8)
	for i := 1; i+8 <= len(v); i += 8 {
		ids = append(ids, binary.BigEndian.Uint64(v[i:]))
	}
	return ids
}

func encodeHolders(ids []uint64) []byte {
	v := make([]byte, 1, 1+8*len(ids))
	v[0] = holdersVersion
	for _, id := range ids {
		v = binary.BigEndian.AppendUint64(v, id)
	}
	return v
}

func adMemberKey(audience, profileID string) []byte {
	return []byte(audience + "\x00" + profileID)
}

// holdAudience records that instance in holds the person in audience; it
// reports whether they were in it before (held by another instance).
func (r *run) holdAudience(audience, profileID string, in *Instance) (already bool, others []string, err error) {
	b := r.tx.Bucket(bucketAdMembers)
	k := adMemberKey(audience, profileID)
	ids := decodeHolders(b.Get(k))
	already = len(ids) > 0
	others = r.holderJourneys(ids, in.ID)
	if !slices.Contains(ids, in.ID) {
		ids = append(ids, in.ID)
	}
	return already, others, b.Put(k, encodeHolders(ids))
}

// releaseAudience drops instance in's hold on the person in audience. last
// says the person is now held by no one (they leave the platform
// audience); held is false when in did not hold them (nothing to do).
// others names the journeys that still hold them.
func (r *run) releaseAudience(audience, profileID string, in *Instance) (held, last bool, others []string, err error) {
	b := r.tx.Bucket(bucketAdMembers)
	k := adMemberKey(audience, profileID)
	ids := decodeHolders(b.Get(k))
	i := slices.Index(ids, in.ID)
	if i < 0 {
		i = slices.Index(ids, legacyHolder)
	}
	if i < 0 {
		return false, false, r.holderJourneys(ids, in.ID), nil
	}
	ids = slices.Delete(ids, i, i+1)
	if len(ids) == 0 {
		return true, true, nil, b.Delete(k)
	}
	return true, false, r.holderJourneys(ids, in.ID), b.Put(k, encodeHolders(ids))
}

// orphanHold turns instance in's hold into one that no instance names:
// the instance ends, the person stays in the audience, and the next
// removal by any journey lets them go.
func (r *run) orphanHold(audience string, in *Instance) error {
	b := r.tx.Bucket(bucketAdMembers)
	k := adMemberKey(audience, in.ProfileID)
	ids := decodeHolders(b.Get(k))
	i := slices.Index(ids, in.ID)
	if i < 0 {
		return nil
	}
	if slices.Contains(ids, legacyHolder) {
		ids = slices.Delete(ids, i, i+1)
	} else {
		ids[i] = legacyHolder
	}
	return b.Put(k, encodeHolders(ids))
}

// heldBy reports whether instance in holds the person in audience.
func (r *run) heldBy(audience, profileID string, in *Instance) bool {
	ids := decodeHolders(r.tx.Bucket(bucketAdMembers).Get(adMemberKey(audience, profileID)))
	return slices.Contains(ids, in.ID) || slices.Contains(ids, legacyHolder)
}

// holderJourneys names the journeys of the holders other than except.
func (r *run) holderJourneys(ids []uint64, except uint64) []string {
	var out []string
	for _, id := range ids {
		if id == except {
			continue
		}
		name := "(an earlier version)"
		if id != legacyHolder {
			if h, err := r.load(id); err == nil {
				name = h.Journey
			}
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// audienceAdd is an audience step's add: the platforms hear of it only
// when no other instance held the person in already.
func (r *run) audienceAdd(j *Journey, in *Instance, s *Step, audience string, pv *rules.ProfileView) error {
	if reason := r.consent(pv, "audience"); reason != "" {
		r.count(j.ID, s.ID, "suppressed", 1)
		r.act(in, s.ID, ActSuppressed, "audience", SuppressedDetail{Audience: audience, Reason: reason})
		return nil
	}
	if r.identifiersOf(in.ProfileID) == nil {
		r.count(j.ID, s.ID, "suppressed", 1)
		r.act(in, s.ID, ActSuppressed, "audience", SuppressedDetail{Audience: audience, Reason: ReasonNoIdentifiers})
		return nil
	}
	already, others, err := r.holdAudience(audience, in.ProfileID, in)
	if err != nil {
		return err
	}
	if !slices.Contains(in.Audiences, audience) {
		in.Audiences = append(in.Audiences, audience)
	}
	r.count(j.ID, s.ID, "sent", 1)
	if already {
		// In the platform audience already: this instance holds them too.
		r.act(in, s.ID, ActAudienceAdd, "audience", AudienceDetail{Audience: audience, Reason: "already in: held by " + joinNames(others), HeldBy: others})
		return nil
	}
	return r.outbox(in, s.ID, ActAudienceAdd, "audience", AudienceDetail{Audience: audience})
}

// audienceRelease ends instance in's hold on the person in audience, from
// its step (outboxStep = the step) or its exit ("exit:<audience>"), and
// tells the platforms when it was the last hold.
func (r *run) audienceRelease(in *Instance, step, outboxStep, audience, reason string) error {
	in.Audiences = slices.DeleteFunc(in.Audiences, func(a string) bool { return a == audience })
	held, last, others, err := r.releaseAudience(audience, in.ProfileID, in)
	if err != nil || !held {
		// Not held by this instance (an add held back for consent, or a
		// removal already made): nothing to tell the ad platforms.
		return err
	}
	if !last {
		r.act(in, step, ActSuppressed, "audience", SuppressedDetail{Audience: audience, Reason: "held: still in " + audience + " for " + joinNames(others), HeldBy: others})
		return nil
	}
	return r.removeFromPlatforms(in, step, outboxStep, audience, reason)
}

// removeFromPlatforms records the removal the ad platforms get.
func (r *run) removeFromPlatforms(in *Instance, step, outboxStep, audience, reason string) error {
	if r.identifiersOf(in.ProfileID) == nil {
		r.act(in, step, ActSuppressed, "audience", SuppressedDetail{Audience: audience, Reason: ReasonNoIdentifiers})
		return nil
	}
	before := len(r.actions)
	if err := r.outbox(in, outboxStep, ActAudienceRemove, "audience", AudienceDetail{Audience: audience, Reason: reason}); err != nil {
		return err
	}
	if len(r.actions) > before {
		// Shown at the step the instance stood on.
		r.actions[len(r.actions)-1].Step = step
	}
	return nil
}

// dropAudiences takes the person out of every policy ad audience at once,
// whoever holds them (erasure, lost ads consent): each live instance
// lets go, and the platforms get one removal per audience.
func (r *run) dropAudiences(p *profiles.Profile, reason string) error {
	b := r.tx.Bucket(bucketAdMembers)
	if !slices.ContainsFunc(r.set.Policy.AdAudiences, func(a AdAudience) bool { return b.Get(adMemberKey(a.Name, p.ID)) != nil }) {
		return nil
	}
	insts, err := r.activeOf(p.ID)
	if err != nil {
		return err
	}
	for _, a := range r.set.Policy.AdAudiences {
		k := adMemberKey(a.Name, p.ID)
		if b.Get(k) == nil {
			continue
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		var by *Instance
		for _, in := range insts {
			if slices.Contains(in.Audiences, a.Name) {
				in.Audiences = slices.DeleteFunc(in.Audiences, func(x string) bool { return x == a.Name })
				if err := r.save(in); err != nil {
					return err
				}
				if by == nil {
					by = in
				}
			}
		}
		if by == nil {
			continue // no live instance to speak for it (an earlier version's member)
		}
		if by.Steps == nil {
			by.Steps = map[string]int{}
		}
		by.Steps["drop:"+a.Name]++
		if err := r.removeFromPlatforms(by, by.Step, "drop:"+a.Name, a.Name, reason); err != nil {
			return err
		}
		if err := r.save(by); err != nil {
			return err
		}
	}
	return nil
}

func joinNames(names []string) string {
	switch len(names) {
	case 0:
		return "another journey"
	case 1:
		return names[0]
	}
	return names[0] + " and " + joinNames(names[1:])
}

// mergeHolds moves the loser's ad audience holds to the survivor: the
// survivor is held in an audience by the instances of both.
func (r *run) mergeHolds(survivorID, loserID string) error {
	b := r.tx.Bucket(bucketAdMembers)
	for _, a := range r.set.Policy.AdAudiences {
		lk := adMemberKey(a.Name, loserID)
		lost := decodeHolders(b.Get(lk))
		if lost == nil {
			continue
		}
		sk := adMemberKey(a.Name, survivorID)
		ids := decodeHolders(b.Get(sk))
		for _, id := range lost {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		if err := b.Put(sk, encodeHolders(ids)); err != nil {
			return err
		}
		if err := b.Delete(lk); err != nil {
			return err
		}
	}
	return nil
}

// speaksOfConsent reports whether an event may have changed consent.
func speaksOfConsent(ev *profiles.Event) bool {
	if ev.Event == profiles.EventConsentUpdated {
		return true
	}
	_, ok := ev.Traits["consent"]
	return ok
}
