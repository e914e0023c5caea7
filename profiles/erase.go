package profiles

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Erasure says what an erase removed.
type Erasure struct {
	ProfileID   string       `json:"profile_id"`
	Identifiers []Identifier `json:"identifiers"`
	MergedFrom  []string     `json:"merged_from,omitempty"`
	Events      int          `json:"events"`
	DropLater   bool         `json:"drop_later"`
	// Scrubbed says the file's free pages, which held the deleted
	// records, were overwritten; false when read transactions kept the
	// scrub from running in time (the next erasure, or `cartera
	// compact`, removes them).
	Scrubbed bool `json:"scrubbed"`
}

// scrubWait bounds how long an erasure waits for read transactions to end
// before it scrubs the file's free pages.
const scrubWait = 5 * time.Second

// Erase removes a person (GDPR right to erasure): the profile, its events,
// its identity links and the ids it was merged from. Each identifier is
// kept only as a keyed hash (a tombstone), so that a later event with the
// same identifiers starts a new, empty profile instead of reviving the old
// one; with dropLater, such later events are not stored at all.
func (s *Store) Erase(id Identifier, dropLater bool) (*Erasure, error) {
	id, err := s.Normalize(id)
	if err != nil {
		return nil, err
	}
	var out *Erasure
	added := 0
	var procs []TxProcessor
	err = s.db.Update(func(tx *bbolt.Tx) error {
		added = 0
		pid := s.resolveTx(tx, id)
		if pid == "" {
			return ErrNotFound
		}
		p, err := getProfile(tx, pid)
		if err != nil {
			return err
		}
		// No decoded copy of the person stays in memory either.
		s.hot.drop(pid)
		out = &Erasure{ProfileID: p.ID, MergedFrom: p.MergedFrom, DropLater: dropLater}
		for _, proc := range s.processors() {
			tp := proc.Begin(tx)
			procs = append(procs, tp)
			if err := tp.Erased(p); err != nil {
				return fmt.Errorf("erase downstream state: %w", err)
			}
		}
		tomb, err := json.Marshal(tombstone{At: s.now().UTC(), DropLater: dropLater})
		if err != nil {
			return err
		}
		idents, tombs := tx.Bucket(bucketIdentities), tx.Bucket(bucketTombstones)
		for _, r := range p.Identities {
			ident := Identifier{Kind: r.Kind, Value: r.Value}
			out.Identifiers = append(out.Identifiers, ident)
			if err := idents.Delete(identityKey(ident)); err != nil {
				return err
			}
			k := s.tombstoneKey(ident)
			if tombs.Get(k) == nil {
				added++
			}
			if err := tombs.Put(k, tomb); err != nil {
				return err
			}
		}
		aliases := tx.Bucket(bucketAliases)
		for _, m := range p.MergedFrom {
			if err := aliases.Delete([]byte(m)); err != nil {
				return err
			}
		}
		if out.Events, err = deletePrefix(tx.Bucket(bucketEvents), []byte(p.ID)); err != nil {
			return fmt.Errorf("delete events: %w", err)
		}
		// A retry of a message applied to the profile must stay a
		// duplicate: its messageIds go to the global bucket.
		people := tx.Bucket(bucketProfiles)
		if err := (&txState{tx: tx, profiles: people}).moveMessages(p.ID, ""); err != nil {
			return err
		}
		// Whatever processors keep beside the profile goes with it.
		if err := deleteSidecars(people, p.ID); err != nil {
			return err
		}
		if err := people.Delete([]byte(p.ID)); err != nil {
			return err
		}
		st := &txState{tx: tx, profileDelta: -1, procs: procs}
		return st.flush()
	})
	for _, tp := range procs {
		tp.Done(err == nil)
	}
	if err != nil {
		return nil, fmt.Errorf("erase %s: %w", id.Kind, err)
	}
	s.profileCount.Add(-1)
	s.tombCount.Add(int64(added))
	s.metrics.Erasures.Inc()
	// Deleting only unlinks the records: the pages that held them are
	// free but still written. Overwrite them before answering.
	zeroed, serr := s.Scrub(scrubWait)
	out.Scrubbed = serr == nil
	if serr != nil {
		s.log.Warn("erased profile's old pages not scrubbed", "profile", out.ProfileID, "err", serr)
	}
	s.log.Info("profile erased", "profile", out.ProfileID, "identifiers", len(out.Identifiers), "events", out.Events, "drop_later", dropLater, "scrubbed_pages", zeroed)
	return out, nil
}

// Export is everything held about a person (GDPR right of access).
type Export struct {
	Profile *Profile `json:"profile"`
	Events  []Event  `json:"events"`
}

// Export returns the profile and every stored event of the person.
func (s *Store) Export(id Identifier) (*Export, error) {
	p, err := s.Lookup(id)
	if err != nil {
		return nil, err
	}
	events, err := s.Events(p.ID, 0)
	if err != nil {
		return nil, err
	}
	return &Export{Profile: p, Events: events}, nil
}
