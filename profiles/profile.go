package profiles

import (
	"cmp"
	"slices"
	"time"
)

// Profile is the golden record of one person.
type Profile struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastSeenAt is the newest event timestamp seen for the person.
	LastSeenAt time.Time          `json:"last_seen_at"`
	Identities []IdentityRecord   `json:"identities"`
	Traits     map[string]Trait   `json:"traits"`
	Consent    map[string]Consent `json:"consent"`
	// ConsentHistory keeps every change of consent, oldest first, bounded.
	ConsentHistory []ConsentChange `json:"consent_history"`
	// Ledger records why this profile is what it is: every merge, and
	// every merge or identifier that a limit refused.
	Ledger []LedgerEntry `json:"ledger"`
	// MergedFrom lists the ids of profiles merged into this one; lookups
	// by those ids land here.
	MergedFrom []string `json:"merged_from,omitempty"`
	EventCount int      `json:"event_count"`
}

// IdentityRecord is an identifier linked to a profile.
type IdentityRecord struct {
	Kind      string    `json:"kind"`
	Value     string    `json:"value"`
	FirstSeen time.Time `json:"first_seen"`
	Source    string    `json:"source,omitempty"`
	// Unverified: only unverified events from client sources (a public
	// write key) named it; an event from a server source, or a verified
	// one, that names it clears the mark. Messages may be kept from such
	// addresses (journeys' policy unverified_addresses: hold).
	Unverified bool `json:"unverified,omitempty"`
}

// Trait is one trait value with the event time that set it; a value only
// replaces another set at the same time or earlier (last write wins by event
// time, so a late-arriving old event never overwrites a newer value).
type Trait struct {
	Value  any       `json:"value"`
	At     time.Time `json:"at"`
	Source string    `json:"source,omitempty"`
}

// Consent is the current state of one purpose or channel ("email", "sms",
// "ads", "push"). At is the server's receipt time of the event that set it,
// never the client's clock: a client cannot date a grant into the future
// and pin it there.
type Consent struct {
	Granted bool      `json:"granted"`
	At      time.Time `json:"at"`
	Source  string    `json:"source,omitempty"`
}

// overrides reports whether a change received at at may replace c. Changes
// are ordered by receipt time; a withdrawal replaces anything not received
// after it, and a grant replaces a withdrawal only when received strictly
// later: at a tie (one request, one batch) the withdrawal wins.
func (c Consent) overrides(granted bool, at time.Time) bool {
	if granted && !c.Granted {
		return at.After(c.At)
	}
	return !at.Before(c.At)
}

// ConsentChange is one entry of a person's consent history; At is the
// server's receipt time.
type ConsentChange struct {
	Purpose   string    `json:"purpose"`
	Granted   bool      `json:"granted"`
	At        time.Time `json:"at"`
	Source    string    `json:"source,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
}

// Ledger actions.
const (
	LedgerMerge             = "merge"
	LedgerRefusedMerge      = "refused_merge"
	LedgerRefusedIdentifier = "refused_identifier"
)

// LedgerEntry answers "why are these two people one?" (or why not).
type LedgerEntry struct {
	At     time.Time `json:"at"`
	Action string    `json:"action"`
	// Profile is the other profile: the one merged in, or the one a merge
	// with was refused.
	Profile string `json:"profile,omitempty"`
	// Identifiers are the event's identifiers that linked (or would have
	// linked) the two.
	Identifiers []Identifier `json:"identifiers"`
	MessageID   string       `json:"message_id,omitempty"`
	EventType   string       `json:"event_type,omitempty"`
	Event       string       `json:"event,omitempty"`
	Source      string       `json:"source,omitempty"`
	Reason      string       `json:"reason"`
}

const (
	maxConsentHistory = 200
	maxRefusals       = 50
)

// TraitValues returns the plain trait values, as the API and rules see them.
func (p *Profile) TraitValues() map[string]any {
	out := make(map[string]any, len(p.Traits))
	for k, t := range p.Traits {
		out[k] = t.Value
	}
	return out
}

// ConsentValues returns purpose → granted.
func (p *Profile) ConsentValues() map[string]bool {
	out := make(map[string]bool, len(p.Consent))
	for k, c := range p.Consent {
		out[k] = c.Granted
	}
	return out
}

// HasIdentity reports whether the profile holds the identifier.
func (p *Profile) HasIdentity(id Identifier) bool {
	return slices.ContainsFunc(p.Identities, func(r IdentityRecord) bool {
		return r.Kind == id.Kind && r.Value == id.Value
	})
}

// Addresses returns the values of kind (email, phone) the profile holds,
// those no unverified client event alone added first, and how many of
// them that is.
func (p *Profile) Addresses(kind string) (values []string, verified int) {
	for _, r := range p.Identities {
		if r.Kind == kind && !r.Unverified {
			values = append(values, r.Value)
		}
	}
	verified = len(values)
	for _, r := range p.Identities {
		if r.Kind == kind && r.Unverified {
			values = append(values, r.Value)
		}
	}
	return values, verified
}

// confirm clears the unverified mark of the identifiers a trusted event
// named; it reports whether one changed.
func (p *Profile) confirm(ids []Identifier) bool {
	changed := false
	for i, r := range p.Identities {
		if r.Unverified && slices.Contains(ids, Identifier{Kind: r.Kind, Value: r.Value}) {
			p.Identities[i].Unverified = false
			changed = true
		}
	}
	return changed
}

func (p *Profile) countKind(kind string) int {
	n := 0
	for _, r := range p.Identities {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

func (p *Profile) setTrait(key string, value any, at time.Time, source string) {
	if p.Traits == nil {
		p.Traits = map[string]Trait{}
	}
	if old, ok := p.Traits[key]; ok && old.At.After(at) {
		return
	}
	p.Traits[key] = Trait{Value: value, At: at, Source: source}
}

func (p *Profile) setConsent(purpose string, granted bool, at time.Time, source, messageID string) {
	if p.Consent == nil {
		p.Consent = map[string]Consent{}
	}
	old, ok := p.Consent[purpose]
	if ok && !old.overrides(granted, at) {
		return
	}
	p.Consent[purpose] = Consent{Granted: granted, At: at, Source: source}
	if !ok || old.Granted != granted {
		p.ConsentHistory = append(p.ConsentHistory, ConsentChange{Purpose: purpose, Granted: granted, At: at, Source: source, MessageID: messageID})
		if n := len(p.ConsentHistory); n > maxConsentHistory {
			p.ConsentHistory = slices.Delete(p.ConsentHistory, 0, n-maxConsentHistory)
		}
	}
}

// addLedger appends an entry; refusals are bounded so that a device that
// keeps sending a conflicting identifier cannot grow the profile forever.
func (p *Profile) addLedger(e LedgerEntry) {
	p.Ledger = append(p.Ledger, e)
	refusals := 0
	for _, l := range p.Ledger {
		if l.Action != LedgerMerge {
			refusals++
		}
	}
	if refusals <= maxRefusals {
		return
	}
	for i, l := range p.Ledger {
		if l.Action != LedgerMerge {
			p.Ledger = slices.Delete(p.Ledger, i, i+1)
			return
		}
	}
}

// absorb folds profile o into p: identities, traits and consent by last
// write wins, ledgers and history interleaved by time. Events are moved by
// the store.
func (p *Profile) absorb(o *Profile) {
	if o.CreatedAt.Before(p.CreatedAt) {
		p.CreatedAt = o.CreatedAt
	}
	if o.LastSeenAt.After(p.LastSeenAt) {
		p.LastSeenAt = o.LastSeenAt
	}
	for _, r := range o.Identities {
		if !p.HasIdentity(Identifier{Kind: r.Kind, Value: r.Value}) {
			p.Identities = append(p.Identities, r)
		}
	}
	for k, t := range o.Traits {
		p.setTrait(k, t.Value, t.At, t.Source)
	}
	for k, c := range o.Consent {
		if cur, ok := p.Consent[k]; !ok || cur.overrides(c.Granted, c.At) {
			if p.Consent == nil {
				p.Consent = map[string]Consent{}
			}
			p.Consent[k] = c
		}
	}
	p.ConsentHistory = append(p.ConsentHistory, o.ConsentHistory...)
	slices.SortStableFunc(p.ConsentHistory, func(a, b ConsentChange) int { return a.At.Compare(b.At) })
	if n := len(p.ConsentHistory); n > maxConsentHistory {
		p.ConsentHistory = slices.Delete(p.ConsentHistory, 0, n-maxConsentHistory)
	}
	p.Ledger = append(p.Ledger, o.Ledger...)
	slices.SortStableFunc(p.Ledger, func(a, b LedgerEntry) int { return a.At.Compare(b.At) })
	p.MergedFrom = append(p.MergedFrom, o.ID)
	p.MergedFrom = append(p.MergedFrom, o.MergedFrom...)
	p.EventCount += o.EventCount
}

// survivorOf is the deterministic merge rule: the profile created first
// survives (ties broken by the smaller id), so the same two profiles always
// merge the same way whatever the order of events.
func survivorOf(a, b *Profile) (survivor, loser *Profile) {
	if c := a.CreatedAt.Compare(b.CreatedAt); c < 0 || (c == 0 && cmp.Less(a.ID, b.ID)) {
		return a, b
	}
	return b, a
}

// EventConsentUpdated is the track event that carries consent in its properties.
const EventConsentUpdated = "Consent Updated"

// isConsentMeta names keys of a consent object that are not purposes.
func isConsentMeta(k string) bool {
	switch k {
	case "source", "reason", "method", "version":
		return true
	}
	return false
}
