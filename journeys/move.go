package journeys

// A person moving to another partition (a merge across partitions, see
// profiles' move.go): their live instances with their pending timers,
// their send history (frequency caps), their journey history and their
// ad audience holds go with them. Instance ids count per file: the
// instances get new ids where they land, and what points at them (the
// person's live-instance sidecars, the timers, the holds) follows.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// movedPerson is the journey engine's part of a moved person's state.
type movedPerson struct {
	Instances []movedInstance `json:"instances,omitempty"`
	// Sends are the person's send history: key (after the profile id) →
	// value, as in journey_sends.
	Sends map[string][]byte `json:"sends,omitempty"`
	// History is the person's journey history, as in journey_history.
	History []byte `json:"history,omitempty"`
	// Holds are the instances holding the person in each ad audience.
	Holds map[string][]uint64 `json:"holds,omitempty"`
}

// movedInstance is a live instance and the value of its pending timer.
type movedInstance struct {
	Instance json.RawMessage `json:"instance"`
	Timer    []byte          `json:"timer,omitempty"`
}

// MoveName implements profiles.PersonMover.
func (e *Engine) MoveName() string { return "journeys" }

// ExportPerson implements profiles.PersonMover.
func (e *Engine) ExportPerson(tx *bbolt.Tx, profileID string) ([]byte, error) {
	r := &run{e: e, tx: tx, set: e.set.Load()}
	insts, err := r.activeOf(profileID)
	if err != nil {
		return nil, err
	}
	var out movedPerson
	for _, in := range insts {
		if in.ProfileID != profileID {
			continue // a sidecar of another file's (see activeFor)
		}
		v, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode journey instance %d: %w", in.ID, err)
		}
		mi := movedInstance{Instance: v}
		if in.Timer != nil {
			mi.Timer = bytes.Clone(tx.Bucket(bucketTimers).Get(in.Timer))
		}
		out.Instances = append(out.Instances, mi)
	}
	for _, kv := range withPrefix(tx.Bucket(bucketSends), []byte(profileID+"\x00")) {
		if out.Sends == nil {
			out.Sends = map[string][]byte{}
		}
		out.Sends[string(kv[0][len(profileID)+1:])] = kv[1]
	}
	out.History = bytes.Clone(tx.Bucket(bucketHistory).Get([]byte(profileID)))
	for _, a := range r.set.Policy.AdAudiences {
		if ids := decodeHolders(tx.Bucket(bucketAdMembers).Get(adMemberKey(a.Name, profileID))); ids != nil {
			if out.Holds == nil {
				out.Holds = map[string][]uint64{}
			}
			out.Holds[a.Name] = ids
		}
	}
	if out.Instances == nil && out.Sends == nil && out.History == nil && out.Holds == nil {
		return nil, nil
	}
	return json.Marshal(out)
}

// ImportPerson implements profiles.TxPersonMover: each instance gets an
// id of this file, its timer a key with it, and the person's live-instance
// sidecar (carried with the profile) points at it.
func (r *run) ImportPerson(profileID string, state []byte) error {
	var mp movedPerson
	if err := json.Unmarshal(state, &mp); err != nil {
		return fmt.Errorf("decode a moved person's journeys: %w", err)
	}
	sc, err := r.sidecars()
	if err != nil {
		return err
	}
	ids := map[uint64]uint64{} // old id → new
	for _, mi := range mp.Instances {
		var in Instance
		if err := json.Unmarshal(mi.Instance, &in); err != nil {
			return fmt.Errorf("decode a moved journey instance: %w", err)
		}
		id, err := r.tx.Bucket(bucketInstances).NextSequence()
		if err != nil {
			return err
		}
		ids[in.ID] = id
		in.ID, in.ProfileID = id, profileID
		if in.Timer != nil {
			k := bytes.Clone(in.Timer)
			binary.BigEndian.PutUint64(k[8:], id)
			if err := r.tx.Bucket(bucketTimers).Put(k, mi.Timer); err != nil {
				return err
			}
			in.Timer = k
			r.count(in.Journey, in.Step, "waiting", 1)
			r.e.poke()
		}
		if err := r.save(&in); err != nil {
			return err
		}
		if err := sc.Put(profileID, activeName(in.Journey, in.Key), activeValue(id, in.Version)); err != nil {
			return err
		}
	}
	// The sidecars of instances that did not come (ended meanwhile) point
	// at nothing here.
	moved := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		moved[id] = true
	}
	var stale []string
	err = sc.Scan(profileID, sidecarActive, func(name string, v []byte) error {
		if len(v) >= 8 && !moved[binary.BigEndian.Uint64(v[:8])] {
			stale = append(stale, name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range stale {
		if err := sc.Delete(profileID, name); err != nil {
			return err
		}
	}
	sends := r.tx.Bucket(bucketSends)
	for k, v := range mp.Sends {
		if err := sends.Put([]byte(profileID+"\x00"+k), v); err != nil {
			return err
		}
	}
	if mp.History != nil {
		if err := r.tx.Bucket(bucketHistory).Put([]byte(profileID), mp.History); err != nil {
			return err
		}
	}
	for a, holders := range mp.Holds {
		moved := make([]uint64, 0, len(holders))
		for _, h := range holders {
			moved = append(moved, ids[h]) // an instance that did not come: legacyHolder
		}
		if err := r.tx.Bucket(bucketAdMembers).Put(adMemberKey(a, profileID), encodeHolders(moved)); err != nil {
			return err
		}
	}
	return nil
}

// MovedOut implements profiles.TxPersonMover: the person's live instances,
// their timers, send history, journey history and holds leave this file,
// with no exit and no audience removal (they go on where the person went).
func (r *run) MovedOut(profileID string) error {
	insts, err := r.activeOf(profileID)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if in.ProfileID != profileID {
			continue
		}
		if in.Timer != nil {
			r.count(in.Journey, in.Step, "waiting", -1)
		}
		if err := r.clearTimer(in); err != nil {
			return err
		}
		if err := r.tx.Bucket(bucketInstances).Delete(u64(in.ID)); err != nil {
			return err
		}
	}
	sends := r.tx.Bucket(bucketSends)
	for _, kv := range withPrefix(sends, []byte(profileID+"\x00")) {
		if err := sends.Delete(kv[0]); err != nil {
			return err
		}
	}
	delete(r.trail, profileID)
	if err := r.tx.Bucket(bucketHistory).Delete([]byte(profileID)); err != nil {
		return err
	}
	for _, a := range r.set.Policy.AdAudiences {
		if err := r.tx.Bucket(bucketAdMembers).Delete(adMemberKey(a.Name, profileID)); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ profiles.PersonMover   = (*Engine)(nil)
	_ profiles.TxPersonMover = (*run)(nil)
)
