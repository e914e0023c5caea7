package profiles

import (
	"fmt"
	"slices"
)

// SourceTrust tells the store which sources are client sources: their
// write key is public, so what they say about who someone is cannot be
// taken on trust. *Sources implements it.
type SourceTrust interface {
	// IsClient reports whether source is a configured client source.
	IsClient(source string) bool
}

// Ledger actions of source trust and identity limits.
const (
	// LedgerClaim records an unverified client event that named
	// identifiers of a protected profile: it was kept on a profile of its
	// own, and the claim is left here for support to see.
	LedgerClaim = "unverified_claim"
	// LedgerRefusedChange records an unverified client event on a
	// protected profile whose traits and consent grants were not applied.
	LedgerRefusedChange = "refused_change"
)

// guarded is what the guard leaves of an event's identity.
type guarded struct {
	ids    []Identifier
	owners []string
	// claimed are identifiers of protected profiles the event named
	// without the right to; claimedFrom is the first such profile.
	claimed     []Identifier
	claimedFrom string
	// limited: the event lands on a protected profile; only its
	// withdrawals of consent apply.
	limited bool
}

// guard keeps an unverified event from a client source off profiles that
// hold identifiers linked by a server source ("protected"): it never
// merges them, adds identifiers to them, or changes their traits or
// consent grants. With identifiers of its own, the event resolves among
// unprotected profiles (a new one if need be) and records the claim there;
// with none, it is stored on the protected profile, limited. Verified
// events (identity verification, see Sources.CheckTrust) and events from
// other sources pass unchanged.
func (s *Store) guard(st *txState, e *Event, ids []Identifier, owner map[Identifier]string, owners []string) (guarded, error) {
	g := guarded{ids: ids, owners: owners}
	if !s.unverified(e) || len(owners) == 0 {
		return g, nil
	}
	var protected []string
	for _, pid := range owners {
		p, err := st.get(pid)
		if err != nil {
			return g, err
		}
		if s.protected(p) {
			protected = append(protected, pid)
		}
	}
	if len(protected) == 0 {
		return g, nil
	}
	var rest []Identifier
	for _, id := range ids {
		if slices.Contains(protected, owner[id]) {
			g.claimed = append(g.claimed, id)
		} else {
			rest = append(rest, id)
		}
	}
	g.claimedFrom = protected[0]
	if len(rest) == 0 {
		// Nothing of its own: the event stays on the most trusted
		// protected profile, and names the others as claims.
		landing := protected[0]
		g.ids, g.owners, g.limited = nil, []string{landing}, true
		g.claimed = slices.DeleteFunc(g.claimed, func(id Identifier) bool {
			if owner[id] == landing {
				g.ids = append(g.ids, id)
				return true
			}
			return false
		})
		if len(protected) > 1 {
			g.claimedFrom = protected[1]
		}
		return g, nil
	}
	g.ids = rest
	g.owners = slices.DeleteFunc(slices.Clone(owners), func(pid string) bool { return slices.Contains(protected, pid) })
	return g, nil
}

// unverified reports whether an event comes from a client source without
// identity verification: what it alone links stays marked unverified.
func (s *Store) unverified(e *Event) bool {
	return s.trust != nil && !e.Verified && s.trust.IsClient(e.Source)
}

// protected reports whether a profile holds an identifier linked by an
// event from a source that is not a client source.
func (s *Store) protected(p *Profile) bool {
	return slices.ContainsFunc(p.Identities, func(r IdentityRecord) bool { return !s.trust.IsClient(r.Source) })
}

// noteGuard writes what the guard did to the ledger of the profile the
// event landed on.
func (s *Store) noteGuard(st *txState, target *Profile, e *Event, g guarded) {
	if len(g.claimed) > 0 {
		s.metrics.Guarded.WithLabelValues(e.Source, "claim").Inc()
		target.addLedger(LedgerEntry{
			At: s.now().UTC(), Action: LedgerClaim, Profile: g.claimedFrom, Identifiers: g.claimed,
			MessageID: e.MessageID, EventType: e.Type, Event: e.Event, Source: e.Source,
			Reason: fmt.Sprintf("an unverified event from client source %s named identifiers of a profile that holds identifiers from a server source: kept apart", e.Source),
		})
		st.logs = append(st.logs, logLine{"unverified claim kept apart", []any{"profile", target.ID, "claimed_profile", g.claimedFrom, "source", e.Source, "message_id", e.MessageID}})
	}
	if g.limited && changesProfile(e) {
		s.metrics.Guarded.WithLabelValues(e.Source, "limited").Inc()
		target.addLedger(LedgerEntry{
			At: s.now().UTC(), Action: LedgerRefusedChange, Identifiers: g.ids,
			MessageID: e.MessageID, EventType: e.Type, Event: e.Event, Source: e.Source,
			Reason: fmt.Sprintf("traits and consent grants of a profile that holds identifiers from a server source change only from a server source or a verified event; client source %s sent this one unverified", e.Source),
		})
	}
}

// changesProfile reports whether an event would set traits or grant
// consent: what a limited event is refused (withdrawals still apply).
func changesProfile(e *Event) bool {
	grants := func(c map[string]any) bool {
		for k, v := range c {
			if b, _ := v.(bool); b && !isConsentMeta(k) {
				return true
			}
		}
		return false
	}
	switch {
	case e.Type == TypeIdentify:
		for k, v := range e.Traits {
			if k != "consent" {
				return true
			}
			if c, _ := v.(map[string]any); grants(c) {
				return true
			}
		}
	case e.Type == TypeTrack && e.Event == EventConsentUpdated:
		return grants(e.Properties)
	}
	return false
}

// claimedTraits are the trait keys the claimed identifiers were read from:
// a claimant's own profile does not get another person's card number or
// address as a trait either.
func (r *resolver) claimedTraits(claimed []Identifier) []string {
	var keys []string
	for _, id := range claimed {
		for _, k := range r.kinds {
			if k.name != id.Kind {
				continue
			}
			for _, p := range k.paths {
				if len(p) == 2 && p[0] == "traits" {
					keys = append(keys, p[1])
				}
			}
		}
	}
	return keys
}

// overLimit reports the first kind whose limit linking ids to p would
// break, counting the event's own identifiers together.
func (s *Store) overLimit(p *Profile, ids []Identifier) (string, bool) {
	adds := map[string]int{}
	for _, id := range ids {
		adds[id.Kind]++
		if p.countKind(id.Kind)+adds[id.Kind] > s.res.limit(id.Kind) {
			return id.Kind, true
		}
	}
	return "", false
}
