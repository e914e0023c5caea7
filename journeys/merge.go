package journeys

// Merges and erasures: what the journey engine does when the profile store
// merges two people or erases one.

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// Merged implements profiles.TxProcessor: the merged-away profile's live
// instances move to the survivor unless it runs the same journey already.
func (r *run) Merged(survivor *profiles.Profile, loserID string) error {
	r.hold(survivor)
	insts, err := r.activeOf(loserID)
	if err != nil {
		return err
	}
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	for _, in := range insts {
		if err := sc.Delete(loserID, activeName(in.Journey, in.Key)); err != nil {
			return err
		}
		if sc.Get(survivor.ID, activeName(in.Journey, in.Key)) != nil {
			r.now = r.e.clock.Now()
			if err := r.finish(in, "merged", false); err != nil {
				return err
			}
			continue
		}
		in.ProfileID = survivor.ID
		if err := sc.Put(survivor.ID, activeName(in.Journey, in.Key), activeValue(in.ID, in.Version)); err != nil {
			return err
		}
		if err := r.save(in); err != nil {
			return err
		}
	}
	if err := r.mergeExperiments(survivor.ID, loserID); err != nil {
		return err
	}
	if err := r.mergeSendHours(survivor.ID, loserID); err != nil {
		return err
	}
	return r.mergeHistory(survivor.ID, loserID)
}

// mergeHistory moves what the engine keeps about a merged-away profile to
// the survivor, so that entry rules (reentry, cooldown), frequency caps and
// ad audience removals see one person.
func (r *run) mergeHistory(survivorID, loserID string) error {
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	type record struct {
		name string
		v    []byte
	}
	var moved []record
	err = sc.Scan(loserID, sidecarEntry, func(name string, v []byte) error {
		moved = append(moved, record{name, bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range moved {
		var rec entryRecord
		if err := decodeEntry(m.v, &rec); err != nil {
			return fmt.Errorf("decode journey entries of %s: %w", loserID, err)
		}
		if v := sc.Get(survivorID, m.name); v != nil {
			var kept entryRecord
			if err := decodeEntry(v, &kept); err != nil {
				return fmt.Errorf("decode journey entries of %s: %w", survivorID, err)
			}
			rec.Entries += kept.Entries
			if kept.LastEntered.After(rec.LastEntered) {
				rec.LastEntered = kept.LastEntered
			}
		}
		if err := sc.Put(survivorID, m.name, encodeEntry(rec)); err != nil {
			return err
		}
		if err := sc.Delete(loserID, m.name); err != nil {
			return err
		}
	}
	prefix := []byte(loserID + "\x00")
	sends := r.tx.Bucket(bucketSends)
	for _, kv := range withPrefix(sends, prefix) {
		if err := sends.Put(append([]byte(survivorID+"\x00"), kv[0][len(prefix):]...), kv[1]); err != nil {
			return err
		}
		if err := sends.Delete(kv[0]); err != nil {
			return err
		}
	}
	if err := r.mergeHistoryLines(survivorID, loserID); err != nil {
		return err
	}
	return r.mergeHolds(survivorID, loserID)
}

// withPrefix copies out the keys and values of b that start with prefix,
// so the caller may change b while going through them.
func withPrefix(b *bbolt.Bucket, prefix []byte) [][2][]byte {
	var out [][2][]byte
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		out = append(out, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
	}
	return out
}

// ReasonErased is the reason of what an erasure ends or removes.
const ReasonErased = "erased"

// Erased implements profiles.TxProcessor: the person's instances end and
// the ad audiences journeys added them to are left.
func (r *run) Erased(p *profiles.Profile) error {
	r.now = r.e.clock.Now()
	r.hold(p)
	if r.erased == nil {
		r.erased = map[string]bool{}
	}
	r.erased[p.ID] = true
	r.forgetExperiments(p.ID)
	if err := r.tx.Bucket(bucketHistory).Delete([]byte(p.ID)); err != nil {
		return err
	}
	delete(r.trail, p.ID)
	// Out of every ad audience at once, whoever holds the person in.
	if err := r.dropAudiences(p, ReasonErased); err != nil {
		return err
	}
	insts, err := r.activeOf(p.ID)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if err := r.finish(in, ReasonErased, true); err != nil {
			return err
		}
	}
	// The person's send history (caps) goes too; the entry histories are
	// sidecars of the profile, which the erasure removes with it.
	sends := r.tx.Bucket(bucketSends)
	for _, kv := range withPrefix(sends, []byte(p.ID+"\x00")) {
		if err := sends.Delete(kv[0]); err != nil {
			return err
		}
	}
	return nil
}
