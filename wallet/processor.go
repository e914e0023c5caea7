package wallet

import (
	"go.etcd.io/bbolt"

	"cartera/profiles"
	"cartera/rules"
)

// Begin implements profiles.Processor: in the commit that changes people,
// their passes are rendered again, once per person at the end of the
// commit, and where what a pass shows changed, its tag advances and the
// update goes into the outbox.
func (s *Service) Begin(tx *bbolt.Tx) profiles.TxProcessor {
	return &txWork{s: s, tx: tx, changed: map[string]*profiles.Profile{}}
}

type txWork struct {
	s      *Service
	tx     *bbolt.Tx
	pushed bool
	// changed are the people this commit touched, by profile id, in
	// order (the latest state of each).
	changed map[string]*profiles.Profile
	order   []string
}

// Event notes the person; Flush renders their passes.
func (w *txWork) Event(p *profiles.Profile, _ *profiles.Event) ([]*profiles.Event, error) {
	w.touch(p)
	return nil, nil
}

func (w *txWork) touch(p *profiles.Profile) {
	if _, ok := w.changed[p.ID]; !ok {
		w.order = append(w.order, p.ID)
	}
	w.changed[p.ID] = p
}

// Flush renders the passes of the people the commit changed.
func (w *txWork) Flush() error {
	for _, id := range w.order {
		p, ok := w.changed[id]
		if !ok {
			continue // merged away or erased
		}
		if err := w.render(p); err != nil {
			return err
		}
	}
	return nil
}

// render renders a person's passes and queues the updates of those that
// changed.
func (w *txWork) render(p *profiles.Profile) error {
	var in *rules.Input
	for _, serial := range serialsOf(w.tx, p.ID) {
		pass, err := getPass(w.tx, serial)
		if err != nil {
			return err
		}
		t, ok := w.s.Templates()[pass.Template]
		if !ok || pass.Voided {
			continue
		}
		if in == nil {
			if in, err = w.s.input(w.tx, p); err != nil {
				return err
			}
		}
		if !pass.apply(t.render(in, pass)) {
			continue
		}
		if err := w.s.save(w.tx, pass, true); err != nil {
			return err
		}
		if err := w.s.enqueuePush(w.tx, pass, "", ""); err != nil {
			return err
		}
		w.pushed = true
	}
	return nil
}

// Merged gives the survivor the passes of the merged profile.
func (w *txWork) Merged(survivor *profiles.Profile, loserID string) error {
	delete(w.changed, loserID)
	w.touch(survivor)
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
	delete(w.changed, p.ID)
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

// Done wakes the outbox once the pushes are committed.
func (w *txWork) Done(committed bool) {
	if committed && w.pushed && w.s.deps.Queue != nil {
		w.s.deps.Queue.Wake()
	}
}
