package wallet

import (
	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/rules"
)

// Begin implements profiles.Processor: within the commit that changes a
// person, their passes are rendered again and, where what they show
// changed, their tag advances and the update is put in the outbox.
func (s *Service) Begin(tx *bbolt.Tx) profiles.TxProcessor { return &txWork{s: s, tx: tx} }

type txWork struct {
	s      *Service
	tx     *bbolt.Tx
	pushed bool
}

// Event renders the person's passes again.
func (w *txWork) Event(p *profiles.Profile, _ *profiles.Event) ([]*profiles.Event, error) {
	serials := serialsOf(w.tx, p.ID)
	if len(serials) == 0 {
		return nil, nil
	}
	var in *rules.Input
	for _, serial := range serials {
		pass, err := getPass(w.tx, serial)
		if err != nil {
			return nil, err
		}
		t, ok := w.s.Templates()[pass.Template]
		if !ok || pass.Voided {
			continue
		}
		if in == nil {
			v, err := w.s.input(w.tx, p)
			if err != nil {
				return nil, err
			}
			in = v
		}
		if !pass.apply(t.render(in, pass)) {
			continue
		}
		if err := w.s.save(w.tx, pass, true); err != nil {
			return nil, err
		}
		if err := w.s.enqueuePush(w.tx, pass, "", ""); err != nil {
			return nil, err
		}
		w.pushed = true
	}
	return nil, nil
}

// Merged gives the survivor the passes of the merged profile.
func (w *txWork) Merged(survivor *profiles.Profile, loserID string) error {
	idx := w.tx.Bucket(bucketByProfile)
	for _, serial := range serialsOf(w.tx, loserID) {
		pass, err := getPass(w.tx, serial)
		if err != nil {
			return err
		}
		pass.ProfileID = survivor.ID
		if err := w.s.save(w.tx, pass, false); err != nil {
			return err
		}
		if err := idx.Delete(profileKey(loserID, serial)); err != nil {
			return err
		}
		if err := idx.Put(profileKey(survivor.ID, serial), nil); err != nil {
			return err
		}
	}
	return nil
}

// Erased voids the person's passes: they keep their serial, so devices
// fetch the voided pass, and nothing about the person.
func (w *txWork) Erased(p *profiles.Profile) error {
	idx := w.tx.Bucket(bucketByProfile)
	for _, serial := range serialsOf(w.tx, p.ID) {
		pass, err := getPass(w.tx, serial)
		if err != nil {
			return err
		}
		voided := &Pass{Serial: pass.Serial, Template: pass.Template, Token: pass.Token, Tag: pass.Tag, Updated: pass.Updated, Created: pass.Created, Tier: pass.Tier, Voided: true}
		if err := w.s.save(w.tx, voided, true); err != nil {
			return err
		}
		if err := w.s.enqueuePush(w.tx, voided, "", ""); err != nil {
			return err
		}
		if err := idx.Delete(profileKey(p.ID, serial)); err != nil {
			return err
		}
		w.pushed = true
	}
	return nil
}

// Flush has nothing pending: every change is written as it is made.
func (w *txWork) Flush() error { return nil }

// Done wakes the outbox once the pushes are committed.
func (w *txWork) Done(committed bool) {
	if committed && w.pushed && w.s.deps.Queue != nil {
		w.s.deps.Queue.Wake()
	}
}
