package journeys

import "cartera/profiles"

// ReasonNoIdentifiers is why an ad audience change is suppressed when the
// person has no email and no phone: the ad platforms match on nothing else.
const ReasonNoIdentifiers = "no_identifiers: no email or phone to match on"

// Identifiers are what ad platforms match people on.
type Identifiers struct {
	Emails []string `json:"emails,omitempty"`
	Phones []string `json:"phones,omitempty"`
}

// hold notes a profile the run was handed (an event's, an erased one's,
// a merge's survivor, a timer's), as the commit holds it.
func (r *run) hold(p *profiles.Profile) {
	if p == nil {
		return
	}
	if r.people == nil {
		r.people = map[string]*profiles.Profile{}
	}
	r.people[p.ID] = p
}

// identifiersOf returns a profile's emails and phones as the run was
// handed the profile — with what this very commit added to it, which a
// read of the stored record would miss (it is written at the commit's
// flush) — or nil when there are none or the run never saw the profile.
func (r *run) identifiersOf(profileID string) *Identifiers {
	p := r.people[profileID]
	if p == nil {
		return nil
	}
	ids := &Identifiers{}
	for _, id := range p.Identities {
		switch id.Kind {
		case profiles.KindEmail:
			ids.Emails = append(ids.Emails, id.Value)
		case profiles.KindPhone:
			ids.Phones = append(ids.Phones, id.Value)
		}
	}
	if len(ids.Emails) == 0 && len(ids.Phones) == 0 {
		return nil
	}
	return ids
}
