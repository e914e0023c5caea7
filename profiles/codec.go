package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"

	"cartera/internal/codec"
)

// encodeProfile is the stored form of a profile: codec.Format2, then the
// fields in order. Profiles written as JSON or codec.Format1 (without the
// positions of unverified identities at the end) by earlier versions
// still decode (decodeProfile tells them apart by the first byte).
func encodeProfile(p *Profile, buf []byte) ([]byte, error) {
	w := &codec.Writer{B: append(buf[:0], codec.Format2)}
	w.String(p.ID)
	w.Time(p.CreatedAt)
	w.Time(p.UpdatedAt)
	w.Time(p.LastSeenAt)
	w.Len(len(p.Identities), p.Identities == nil)
	for _, r := range p.Identities {
		w.String(r.Kind)
		w.String(r.Value)
		w.Time(r.FirstSeen)
		w.String(r.Source)
	}
	w.Len(len(p.Traits), p.Traits == nil)
	for k, t := range p.Traits {
		w.String(k)
		if err := w.Value(t.Value); err != nil {
			return nil, err
		}
		w.Time(t.At)
		w.String(t.Source)
	}
	w.Len(len(p.Consent), p.Consent == nil)
	for k, c := range p.Consent {
		w.String(k)
		w.Bool(c.Granted)
		w.Time(c.At)
		w.String(c.Source)
	}
	w.Len(len(p.ConsentHistory), p.ConsentHistory == nil)
	for _, c := range p.ConsentHistory {
		w.String(c.Purpose)
		w.Bool(c.Granted)
		w.Time(c.At)
		w.String(c.Source)
		w.String(c.MessageID)
	}
	w.Len(len(p.Ledger), p.Ledger == nil)
	for _, l := range p.Ledger {
		w.Time(l.At)
		w.String(l.Action)
		w.String(l.Profile)
		w.Len(len(l.Identifiers), l.Identifiers == nil)
		for _, id := range l.Identifiers {
			w.String(id.Kind)
			w.String(id.Value)
		}
		w.String(l.MessageID)
		w.String(l.EventType)
		w.String(l.Event)
		w.String(l.Source)
		w.String(l.Reason)
	}
	w.Len(len(p.MergedFrom), p.MergedFrom == nil)
	for _, id := range p.MergedFrom {
		w.String(id)
	}
	w.Int(p.EventCount)
	// Format2: the positions of the unverified identities.
	var unverified []int
	for i, r := range p.Identities {
		if r.Unverified {
			unverified = append(unverified, i)
		}
	}
	w.Len(len(unverified), false)
	for _, i := range unverified {
		w.Int(i)
	}
	return w.B, nil
}

// decodeProfile reads a stored profile in either form.
func decodeProfile(v []byte, p *Profile) error {
	if len(v) == 0 || v[0] != codec.Format1 && v[0] != codec.Format2 {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber() // trait numbers stay as ingested (json.Number)
		return dec.Decode(p)
	}
	r := codec.NewReader(v[1:])
	p.ID = r.String()
	p.CreatedAt = r.Time()
	p.UpdatedAt = r.Time()
	p.LastSeenAt = r.Time()
	if n, isNil := r.Len(); !isNil {
		p.Identities = make([]IdentityRecord, n)
		for i := range p.Identities {
			p.Identities[i] = IdentityRecord{Kind: r.String(), Value: r.String(), FirstSeen: r.Time(), Source: r.String()}
		}
	}
	if n, isNil := r.Len(); !isNil {
		p.Traits = make(map[string]Trait, n)
		for range n {
			k := r.String()
			p.Traits[k] = Trait{Value: r.Value(), At: r.Time(), Source: r.String()}
		}
	}
	if n, isNil := r.Len(); !isNil {
		p.Consent = make(map[string]Consent, n)
		for range n {
			k := r.String()
			p.Consent[k] = Consent{Granted: r.Bool(), At: r.Time(), Source: r.String()}
		}
	}
	if n, isNil := r.Len(); !isNil {
		p.ConsentHistory = make([]ConsentChange, n)
		for i := range p.ConsentHistory {
			p.ConsentHistory[i] = ConsentChange{Purpose: r.String(), Granted: r.Bool(), At: r.Time(), Source: r.String(), MessageID: r.String()}
		}
	}
	if n, isNil := r.Len(); !isNil {
		p.Ledger = make([]LedgerEntry, n)
		for i := range p.Ledger {
			l := LedgerEntry{At: r.Time(), Action: r.String(), Profile: r.String()}
			if m, isNil := r.Len(); !isNil {
				l.Identifiers = make([]Identifier, m)
				for j := range l.Identifiers {
					l.Identifiers[j] = Identifier{Kind: r.String(), Value: r.String()}
				}
			}
			l.MessageID, l.EventType, l.Event, l.Source, l.Reason = r.String(), r.String(), r.String(), r.String(), r.String()
			p.Ledger[i] = l
		}
	}
	if n, isNil := r.Len(); !isNil {
		p.MergedFrom = make([]string, n)
		for i := range p.MergedFrom {
			p.MergedFrom[i] = r.String()
		}
	}
	p.EventCount = r.Int()
	if v[0] == codec.Format2 {
		n, _ := r.Len()
		if n > len(p.Identities) {
			return fmt.Errorf("%w: %d unverified identities of %d", codec.ErrCorrupt, n, len(p.Identities))
		}
		for range n {
			if i := r.Int(); i >= 0 && i < len(p.Identities) {
				p.Identities[i].Unverified = true
			} else {
				return fmt.Errorf("%w: unverified identity %d of %d", codec.ErrCorrupt, i, len(p.Identities))
			}
		}
	}
	return r.Done()
}
