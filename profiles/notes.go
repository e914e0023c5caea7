package profiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/bbolt"
)

// Notes are records a partition's core appends to the partition's stream
// about state of its own that lives in the partition's file beside the
// profiles: the channels' outbox notes the messages it delivered. A new
// owner of the partition restores the last snapshot and replays the
// stream after it; state changed after that snapshot and kept only in the
// old owner's file is lost when that node dies, and for the outbox that
// is a message sent again. The note, replayed, tells the new owner.
//
//	'@' profile id (24 hex) ' ' 'N' kind '\n' body
//
// The profile id only places the note in its partition. A store applies a
// note in a write transaction of its own, in the partition's order, with
// the handler of its kind (HandleNotes); a note of a kind no handler
// takes is skipped.
const noteMark = 'N'

// deadNote is the type of a note whose handler kept failing.
const deadNote = "note"

// NoteHandler applies a note's body within tx. It must be safe to apply a
// note twice, and a note about state the file already has.
type NoteHandler func(tx *bbolt.Tx, body []byte) error

// notes are a store's note handlers, by kind.
type notes struct {
	mu sync.RWMutex
	by map[string]NoteHandler
}

func (n *notes) handler(kind string) NoteHandler {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.by[kind]
}

// noteStep is a note to apply (commitReq.note).
type noteStep struct {
	kind string
	body []byte
}

// HandleNotes makes h apply the notes of kind; set it before the store
// applies a partition.
func (s *Store) HandleNotes(kind string, h NoteHandler) {
	s.notes.mu.Lock()
	defer s.notes.mu.Unlock()
	if s.notes.by == nil {
		s.notes.by = map[string]NoteHandler{}
	}
	s.notes.by[kind] = h
}

// Note appends a note of kind to the stream of the partition this store
// applies, placed by profileID (a profile of the partition), and returns
// true once it is durable there. It returns false, having done nothing,
// when the store applies no partition whose log takes records, or
// profileID belongs to another partition: the file is then the only
// record of the state, and the caller's own commit keeps it.
func (s *Store) Note(ctx context.Context, profileID, kind string, body []byte) (bool, error) {
	pi := s.partIngest.Load()
	if pi == nil {
		return false, nil
	}
	if !ValidProfileID(profileID) {
		return false, fmt.Errorf("note %s: %q is not a profile id", kind, profileID)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, partIngestWait)
		defer cancel()
	}
	_, err := pi.log.AppendRecords(ctx, [][]byte{RoutedRecord(profileID, NoteBody(kind, body))})
	switch {
	case errors.Is(err, ErrOtherPartition):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("note %s in partition %d: %w", kind, pi.p, err)
	}
	return true, nil
}

// NoteBody is the body of a routed note record of kind.
func NoteBody(kind string, body []byte) []byte {
	out := make([]byte, 0, 2+len(kind)+len(body))
	out = append(out, noteMark)
	out = append(out, kind...)
	out = append(out, '\n')
	return append(out, body...)
}

// parseNote splits a routed record's body into a note's kind and body if
// it is a note.
func parseNote(body []byte) (kind string, note []byte, ok bool) {
	if len(body) == 0 || body[0] != noteMark {
		return "", nil, false
	}
	k, rest, found := bytes.Cut(body[1:], []byte{'\n'})
	if !found {
		return "", nil, false
	}
	return string(k), rest, true
}

// submitNote commits a note at offset off of t. One its handler keeps
// failing on is recorded as dead, as an event is, so that it does not
// hold up the partition for ever.
func (s *Store) submitNote(ctx context.Context, t *partTarget, off uint64, kind string, body []byte) error {
	h := s.notes.handler(kind)
	if h == nil {
		// Nothing here keeps that state (a node configured without
		// the component): the offset moves on.
		return s.submitApply(ctx, t, nil, off)
	}
	tries, err := s.retry(ctx, func() error {
		req := &commitReq{note: &noteStep{kind: kind, body: body}, through: off, done: make(chan error, 1)}
		t.prepare(req)
		return s.submit(ctx, req)
	})
	if err == nil {
		s.advance(t, off)
		return nil
	}
	if !isEventError(err) {
		return err
	}
	return s.recordDead(ctx, t, &deadEvent{Offset: off, At: s.now().UTC(), Type: deadNote, Event: kind, Tries: tries,
		Error: fmt.Sprintf("note %q at offset %d: %v", kind, off, err)})
}

// applyNote runs a note's handler in the commit's transaction.
func (s *Store) applyNote(tx *bbolt.Tx, n *noteStep) error {
	h := s.notes.handler(n.kind)
	if h == nil {
		return nil
	}
	if err := h(tx, n.body); err != nil {
		return fmt.Errorf("apply note %s: %w", n.kind, err)
	}
	return nil
}

// isNoteBody says whether a routed record's body is a note.
func isNoteBody(body []byte) bool {
	_, _, ok := parseNote(body)
	return ok
}
