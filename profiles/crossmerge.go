package profiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// A merge of two profiles held in different partitions of a cluster goes
// through the event log, so that each partition's state still changes
// only by applying its own records, in order:
//
//  1. The router (profiles/jetstream) sees an event whose identifiers lead
//     to two profiles. It records in its identity index that the newer
//     one (the loser) now forwards to the older one (the survivor), and
//     appends a MergeOut record to the loser's partition.
//  2. The loser's partition, applying MergeOut, exports the loser's whole
//     state (record, sidecars, events), appends it as a MergeIn record to
//     the survivor's partition, then commits the loser's removal and an
//     alias loser → survivor. From then on an event still addressed to the
//     loser (routed before step 1) is forwarded: appended again, addressed
//     to the survivor, after the MergeIn.
//  3. The survivor's partition, applying MergeIn, imports the loser's
//     state and merges it as a single store merges two of its own
//     profiles (Merged is called on the processors), remembering the
//     merge's marker, so a MergeIn sent twice (the loser's owner died
//     between its append and its commit) is applied once.
//
// Forwarded events keep their messageId: one the survivor already holds
// (it came with the loser's state) is a duplicate there.

// Forwarder is what a PartitionLog offers when its records may be routed
// (cluster mode with an identity index): appending records addressed to
// other profiles, wherever their partitions are.
type Forwarder interface {
	// Forward appends routed records (RoutedRecord) and returns once
	// they are durable.
	Forward(ctx context.Context, recs [][]byte) error
	// MaxRecord is the size of the largest record Forward accepts.
	MaxRecord() int
}

// mergeStep is a merge record being committed.
type mergeStep struct{ rec *MergeRecord }

// applyPartRecords applies the records of a partition above what t
// applied (see applyRecords).
func (s *Store) applyPartRecords(ctx context.Context, t *partTarget, recs []Record, fwd Forwarder) error {
	offs := make([]uint64, 0, len(recs))
	raws := make([][]byte, 0, len(recs))
	for _, r := range recs {
		if r.Offset <= t.through || (len(offs) > 0 && r.Offset <= offs[len(offs)-1]) {
			continue
		}
		offs = append(offs, r.Offset)
		raws = append(raws, r.Data)
	}
	return s.applyRecords(ctx, t, offs, raws, fwd)
}

// applyRecords applies the records raws at offsets offs (increasing) of
// partition t (nil: the store's own log), in order: plain and routed
// events in group commits, events to forward in one append for each run
// of them, merge steps one at a time.
func (s *Store) applyRecords(ctx context.Context, t *partTarget, offs []uint64, raws [][]byte, fwd Forwarder) error {
	if len(offs) == 0 {
		return nil
	}
	start := 0
	// forwards are the events to forward read since the last commit, up
	// to offset forwardsThrough: sent before anything after them is
	// committed, so that a commit never covers one not sent.
	var forwards [][]byte
	var forwardsThrough uint64
	flush := func(end int) error {
		if len(forwards) > 0 {
			err := s.forward(ctx, t, forwardsThrough, fwd, forwards)
			forwards = nil
			if err != nil {
				return err
			}
		}
		if end <= start {
			return nil
		}
		err := s.applySpan(ctx, t, offs[start:end], decodeRecords(raws[start:end]), raws[start:end])
		start = end
		return err
	}
	var moved map[string]string
	for i, raw := range raws {
		route, body := RecordRoute(raw)
		if route == "" {
			continue
		}
		if kind, note, ok := parseNote(body); ok {
			// The partition's own: applied here, in order.
			if err := flush(i); err != nil {
				return err
			}
			start = i + 1
			if err := s.submitNote(ctx, t, offs[i], kind, note); err != nil {
				return err
			}
			continue
		}
		if moved == nil {
			moved = s.movedAway(raws)
		}
		m, isMerge, perr := parseMerge(body)
		to := moved[route]
		if !isMerge && to == "" {
			continue
		}
		if !isMerge && start < i {
			// Events to apply before this one to forward.
			if err := flush(i); err != nil {
				return err
			}
		}
		if !isMerge {
			forwards = append(forwards, RoutedRecord(to, body))
			forwardsThrough, start = offs[i], i+1
			continue
		}
		if err := flush(i); err != nil {
			return err
		}
		start = i + 1
		var err error
		switch {
		case perr != nil:
			// Recorded as dead, as an event that does not decode.
			err = s.recordDead(ctx, t, &deadEvent{Offset: offs[i], At: s.now().UTC(), Type: deadMerge, Error: perr.Error()})
		case m.Op == MergeOut:
			err = s.mergeOut(ctx, t, offs[i], fwd, m, moved)
		case to != "":
			// The survivor was itself merged away: its survivor takes
			// the state.
			m.Survivor = to
			var b []byte
			if b, err = MergeBody(*m); err == nil {
				err = s.forward(ctx, t, offs[i], fwd, [][]byte{RoutedRecord(to, b)})
			}
		default:
			_, err = s.submitMerge(ctx, t, offs[i], m)
		}
		if err != nil {
			return err
		}
	}
	return flush(len(raws))
}

// movedAway maps each profile the routed records address that was merged
// away from this store to the profile it became here.
func (s *Store) movedAway(raws [][]byte) map[string]string {
	out := map[string]string{}
	_ = s.db.View(func(tx *bbolt.Tx) error {
		profiles, aliases := tx.Bucket(bucketProfiles), tx.Bucket(bucketAliases)
		for _, raw := range raws {
			route, _ := RecordRoute(raw)
			if route == "" {
				continue
			}
			if _, seen := out[route]; seen {
				continue
			}
			to := ""
			if profiles.Get([]byte(route)) == nil {
				to = string(aliases.Get([]byte(route)))
			}
			out[route] = to
		}
		return nil
	})
	return out
}

// forward appends recs (events or a merge step for profiles merged away
// from here, read up to offset through) to their new profiles'
// partitions in one append, then commits the offset.
func (s *Store) forward(ctx context.Context, t *partTarget, through uint64, fwd Forwarder, recs [][]byte) error {
	if fwd == nil {
		return errors.New("forward records: this partition's log cannot append")
	}
	if err := fwd.Forward(ctx, recs); err != nil {
		return fmt.Errorf("forward %d records read up to offset %d: %w", len(recs), through, err)
	}
	s.metrics.Forwarded.Add(float64(len(recs)))
	return s.submitApply(ctx, t, nil, through)
}

// mergeOut sends the loser's state to the survivor's partition, then
// commits its removal here.
func (s *Store) mergeOut(ctx context.Context, t *partTarget, off uint64, fwd Forwarder, m *MergeRecord, moved map[string]string) error {
	if fwd == nil {
		return errors.New("merge out: this partition's log cannot append")
	}
	leave, err := s.markLeaving(m.Loser)
	if err != nil {
		return fmt.Errorf("merge %s into %s: %w", m.Loser, m.Survivor, err)
	}
	defer leave()
	state, err := s.exportState(m.Loser, fwd.MaxRecord())
	if err != nil {
		return fmt.Errorf("merge %s into %s: %w", m.Loser, m.Survivor, err)
	}
	if state != nil {
		in := MergeRecord{Op: MergeIn, Loser: m.Loser, Survivor: m.Survivor, State: state}
		b, err := MergeBody(in)
		if err != nil {
			return err
		}
		if err := fwd.Forward(ctx, [][]byte{RoutedRecord(m.Survivor, b)}); err != nil {
			return fmt.Errorf("merge %s into %s: send the state: %w", m.Loser, m.Survivor, err)
		}
	}
	applied, err := s.submitMerge(ctx, t, off, m)
	if applied {
		moved[m.Loser] = m.Survivor
	}
	return err
}

// deadMerge is the type of a dead merge step.
const deadMerge = "merge"

// submitMerge commits a merge step. One the processors keep failing on is
// recorded as dead, as an event is, so that it does not hold up the
// partition for ever; applied says whether it was committed.
func (s *Store) submitMerge(ctx context.Context, t *partTarget, off uint64, m *MergeRecord) (applied bool, err error) {
	tries, err := s.retry(ctx, func() error {
		req := &commitReq{merge: &mergeStep{rec: m}, through: off, done: make(chan error, 1)}
		t.prepare(req)
		return s.submit(ctx, req)
	})
	if err == nil {
		s.advance(t, off)
		return true, nil
	}
	if !isEventError(err) {
		return false, err
	}
	return false, s.recordDead(ctx, t, &deadEvent{Offset: off, At: s.now().UTC(), Type: deadMerge, Event: m.Op, Tries: tries,
		Error: fmt.Sprintf("merge step %q at offset %d: %v", m.Op, off, err)})
}

// exportState reads everything stored under a profile (nil if there is no
// such profile), leaving out its oldest events until the MergeIn record
// fits in max bytes.
func (s *Store) exportState(id string, max int) (*ProfileState, error) {
	var state *ProfileState
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketProfiles)
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		state = &ProfileState{Profile: bytes.Clone(v), Sidecars: map[string][]byte{}}
		prefix := SidecarKey(id, "")
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			state.Sidecars[string(k[len(prefix):])] = bytes.Clone(v)
		}
		c = tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek([]byte(id)); k != nil && bytes.HasPrefix(k, []byte(id)); k, v = c.Next() {
			if len(k) != idLen+16 {
				continue
			}
			state.Events = append(state.Events, StoredEvent{At: int64(binary.BigEndian.Uint64(k[idLen:])), JSON: bytes.Clone(v)})
		}
		var err error
		state.Parts, err = s.exportParts(tx, id)
		return err
	})
	if err != nil || state == nil {
		return nil, err
	}
	for {
		b, err := MergeBody(MergeRecord{Op: MergeIn, Loser: id, Survivor: id, State: state})
		if err != nil {
			return nil, err
		}
		if max <= 0 || routeHead+len(b) <= max {
			return state, nil
		}
		if len(state.Events) == 0 {
			return nil, fmt.Errorf("the state of profile %s is %d bytes without its events, over the log's largest record (%d)", id, len(b), max)
		}
		drop := (len(state.Events) + 1) / 2
		state.Events = state.Events[drop:]
		state.Dropped += drop
	}
}

// mergeStepTx applies a merge step within the commit's transaction.
func (s *Store) mergeStepTx(st *txState, m *MergeRecord) error {
	if m.Op == MergeOut {
		return s.mergeOutTx(st, m)
	}
	return s.mergeInTx(st, m)
}

// mergeOutTx removes the loser (its state was sent to the survivor's
// partition) and leaves an alias to the survivor, which makes this store
// forward the loser's later records.
func (s *Store) mergeOutTx(st *txState, m *MergeRecord) error {
	aliases := st.tx.Bucket(bucketAliases)
	p, err := st.get(m.Loser)
	if errors.Is(err, ErrNotFound) {
		// Never applied here (its first event was routed after the
		// merge), or removed already (a MergeOut applied again).
		return aliases.Put([]byte(m.Loser), []byte(m.Survivor))
	}
	if err != nil {
		return err
	}
	for _, r := range p.Identities {
		k := identityKey(Identifier{Kind: r.Kind, Value: r.Value})
		if string(st.identities.Get(k)) == p.ID {
			if err := st.identities.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, id := range append([]string{p.ID}, p.MergedFrom...) {
		if err := aliases.Put([]byte(id), []byte(m.Survivor)); err != nil {
			return err
		}
	}
	if err := s.movedOut(st, p.ID); err != nil {
		return err
	}
	if err := deleteSidecars(st.profiles, p.ID); err != nil {
		return err
	}
	if _, err := deletePrefix(st.events, []byte(p.ID)); err != nil {
		return fmt.Errorf("delete the events of %s: %w", p.ID, err)
	}
	st.remove(p.ID)
	st.profileDelta--
	st.logs = append(st.logs, logLine{"profile merged out to another partition", []any{"profile", p.ID, "survivor", m.Survivor}})
	return nil
}

// mergeInTx imports the loser's state and merges it into the survivor
// (created if this store has not applied any of its events yet).
func (s *Store) mergeInTx(st *txState, m *MergeRecord) error {
	marker := mergeMarker(m.Loser)
	if st.seen([]string{m.Survivor}, marker) {
		return nil
	}
	if st.profiles.Get([]byte(m.Loser)) != nil {
		return fmt.Errorf("merge %s into %s: this partition holds the loser already", m.Loser, m.Survivor)
	}
	state := m.State
	var lp Profile
	if err := decodeProfile(state.Profile, &lp); err != nil {
		return fmt.Errorf("merge %s into %s: decode the loser: %w", m.Loser, m.Survivor, err)
	}
	if lp.ID != m.Loser {
		return fmt.Errorf("merge %s into %s: the state is of profile %s", m.Loser, m.Survivor, lp.ID)
	}
	if err := st.profiles.Put([]byte(m.Loser), state.Profile); err != nil {
		return err
	}
	// A messageId both hold was applied to each: a retry routed to the
	// survivor after the index forwarded the loser, applied before this
	// state came. The survivor's copy of the event stays, the loser's is
	// left out.
	both := map[string]bool{}
	for name, v := range state.Sidecars {
		if mid, ok := strings.CutPrefix(name, sidecarMessage); ok && st.profiles.Get(messageKey(m.Survivor, mid)) != nil {
			both[mid] = true
		}
		if err := st.profiles.Put(SidecarKey(m.Loser, name), v); err != nil {
			return err
		}
	}
	kept := 0
	for _, ev := range state.Events {
		if len(both) > 0 {
			var id struct {
				MessageID string `json:"messageId"`
			}
			if json.Unmarshal(ev.JSON, &id) == nil && both[id.MessageID] {
				continue
			}
		}
		kept++
		seq, err := st.events.NextSequence()
		if err != nil {
			return err
		}
		if err := st.events.Put(eventKey(m.Loser, time.Unix(0, ev.At), seq), ev.JSON); err != nil {
			return err
		}
	}
	for _, r := range lp.Identities {
		if err := st.identities.Put(identityKey(Identifier{Kind: r.Kind, Value: r.Value}), []byte(m.Loser)); err != nil {
			return err
		}
	}
	loser, err := st.get(m.Loser)
	if err != nil {
		return err
	}
	if err := s.importParts(st, m.Loser, state.Parts); err != nil {
		return err
	}
	loser.EventCount = kept
	st.profileDelta++
	survivor, err := st.get(m.Survivor)
	if errors.Is(err, ErrNotFound) {
		now := s.now().UTC()
		survivor = &Profile{ID: m.Survivor, CreatedAt: lp.CreatedAt, UpdatedAt: now}
		if err := st.placeNew(survivor); err != nil {
			return err
		}
		st.put(survivor)
		st.profileDelta++
	} else if err != nil {
		return err
	}
	var linking []Identifier
	for _, r := range lp.Identities {
		linking = append(linking, Identifier{Kind: r.Kind, Value: r.Value})
	}
	cause := &Event{MessageID: marker, Source: SourceCartera}
	reason := "the cluster's identity index linked the two profiles (held in different partitions); the older profile survives"
	if state.Dropped > 0 {
		reason += fmt.Sprintf("; the %d oldest events of the merged profile were left out to fit the log's largest record", state.Dropped)
	}
	if _, err := s.mergeInto(st, survivor, loser, cause, linking, reason); err != nil {
		return err
	}
	return st.remember(m.Survivor, marker, s.now().UnixNano())
}
