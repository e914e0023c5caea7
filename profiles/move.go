package profiles

import (
	"fmt"

	"go.etcd.io/bbolt"
)

// A merge across partitions carries the loser's profile, sidecars and
// events to the survivor's partition (MergeRecord). What processors keep
// about the loser in their own buckets (a journey's live instances and
// their timers, a person's passes) moves with it when the processor is a
// PersonMover: the loser's partition reads it into the MergeIn record
// (ProfileState.Parts) and forgets it when it commits the MergeOut,
// without acting on it; the survivor's partition keeps it under the
// loser's id before it merges the loser into the survivor, so that the
// processor's Merged moves it to the survivor as on one store.

// PersonMover is a Processor whose state about a person moves with them
// to another partition.
type PersonMover interface {
	Processor
	// MoveName names the processor's part of a moved person's state.
	MoveName() string
	// ExportPerson reads what the processor keeps about profileID (nil:
	// nothing), in a read transaction.
	ExportPerson(tx *bbolt.Tx, profileID string) ([]byte, error)
}

// TxPersonMover is the TxProcessor of a PersonMover.
type TxPersonMover interface {
	// ImportPerson keeps, under profileID, what ExportPerson read of it
	// in another partition's file.
	ImportPerson(profileID string, state []byte) error
	// MovedOut forgets what the processor keeps about profileID, whose
	// state now lives in another partition, without acting on it (no
	// exit, no message).
	MovedOut(profileID string) error
}

// exportParts reads the processors' parts of profile id's state.
func (s *Store) exportParts(tx *bbolt.Tx, id string) (map[string][]byte, error) {
	var parts map[string][]byte
	for _, p := range s.processors() {
		m, ok := p.(PersonMover)
		if !ok {
			continue
		}
		part, err := m.ExportPerson(tx, id)
		if err != nil {
			return nil, fmt.Errorf("export %s of %s: %w", m.MoveName(), id, err)
		}
		if part == nil {
			continue
		}
		if parts == nil {
			parts = map[string][]byte{}
		}
		parts[m.MoveName()] = part
	}
	return parts, nil
}

// importParts hands each processor its part of the loser's state.
func (s *Store) importParts(st *txState, loser string, parts map[string][]byte) error {
	for i, p := range s.processors() {
		m, ok := p.(PersonMover)
		if !ok || parts[m.MoveName()] == nil || i >= len(st.procs) {
			continue
		}
		tm, ok := st.procs[i].(TxPersonMover)
		if !ok {
			continue
		}
		if err := tm.ImportPerson(loser, parts[m.MoveName()]); err != nil {
			return fmt.Errorf("import %s of %s: %w", m.MoveName(), loser, err)
		}
	}
	return nil
}

// movedOut tells each processor that the loser's state left.
func (s *Store) movedOut(st *txState, loser string) error {
	for _, tp := range st.procs {
		if tm, ok := tp.(TxPersonMover); ok {
			if err := tm.MovedOut(loser); err != nil {
				return fmt.Errorf("forget %s moved out: %w", loser, err)
			}
		}
	}
	return nil
}

// Leaving says whether profile id is moving out of this file: its state
// was read for another partition and its MergeOut is not committed yet.
// Work a processor does apart from the events it is given (a journey's
// timer firing) leaves such a person alone: what it would change went
// with them, and is done where they go.
func (s *Store) Leaving(id string) bool {
	s.leavingMu.Lock()
	defer s.leavingMu.Unlock()
	return s.leaving[id]
}

// markLeaving marks profile id leaving until the returned func is called,
// once every write in flight has committed: what such a write did is in
// the export that follows, and one after the mark sees it.
func (s *Store) markLeaving(id string) (func(), error) {
	s.leavingMu.Lock()
	if s.leaving == nil {
		s.leaving = map[string]bool{}
	}
	s.leaving[id] = true
	s.leavingMu.Unlock()
	done := func() {
		s.leavingMu.Lock()
		delete(s.leaving, id)
		s.leavingMu.Unlock()
	}
	// bbolt has one writer at a time: beginning one waits for the write
	// in flight, and rolling it back writes nothing (a commit would cost a
	// sync).
	tx, err := s.db.Begin(true)
	if err != nil {
		done()
		return nil, fmt.Errorf("wait for the writes in flight: %w", err)
	}
	_ = tx.Rollback()
	return done, nil
}
