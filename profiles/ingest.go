package profiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Result says what happened to one ingested event.
type Result struct {
	// ProfileID is the profile the event now belongs to ("" if dropped).
	ProfileID string
	// Duplicate is true when the messageId had been applied before.
	Duplicate bool
	// Dropped is true when the event carried an identifier erased with
	// suppression of later events.
	Dropped bool
	// Created is true when the event made a new profile.
	Created bool
	// Merged lists profiles that this event merged into ProfileID.
	Merged []string
}

type commitReq struct {
	events  []*Event
	results []Result
	done    chan error
	// between, when set, is run by the writer between two commits
	// instead of applying events (see Between).
	between func()
	// through, when set, is the event-log offset the request's events
	// (or dead) bring the store to; it commits with them (applier.go).
	through uint64
	dead    *deadEvent
	// appliedKey, when set, is the meta key through is stored under (a
	// partition's, partition.go) instead of the event log's; fence, when
	// set, is checked last in the transaction, and a failure rolls the
	// request back.
	appliedKey []byte
	fence      func() error
	// merge, when set, is a step of a merge across partitions
	// (crossmerge.go), applied before the events.
	merge *mergeStep
	// note, when set, is a note to apply (notes.go).
	note *noteStep
}

// Ingest applies events in order and returns once they are durably
// committed (fsync'd): the caller may acknowledge them. Concurrent calls
// share one bbolt transaction (group commit). If ctx ends first, Ingest
// returns its error, but the events may still be committed; a retry with the
// same messageIds is then a no-op.
func (s *Store) Ingest(ctx context.Context, events []*Event) ([]Result, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for _, e := range events {
		// Encoded here, in parallel with other callers; the committer
		// only copies the bytes into the page.
		v, err := encodeEvent(e)
		if err != nil {
			return nil, fmt.Errorf("encode event: %w", err)
		}
		e.stored = v
	}
	req := &commitReq{events: events, results: make([]Result, len(events)), done: make(chan error, 1)}
	if err := s.submit(ctx, req); err != nil {
		return nil, err
	}
	return req.results, nil
}

// Between runs fn on the single writer between two commits, when no event
// is being applied: whatever fn swaps (the definitions of the engines that
// run in the write transaction, say) is seen whole by every event
// committed after it and by none before. fn must not call the Store. If
// ctx ends first, Between returns its error, but fn may still run.
func (s *Store) Between(ctx context.Context, fn func()) error {
	return s.submit(ctx, &commitReq{between: fn, done: make(chan error, 1)})
}

// submit hands req to the writer and waits for its answer.
func (s *Store) submit(ctx context.Context, req *commitReq) error {
	select {
	case <-s.stop:
		return ErrClosed
	default:
	}
	select {
	case s.reqs <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-s.done:
		// The writer exited; it may have answered just before.
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitLoop is the single writer: it takes whatever requests are queued,
// applies them in one transaction and answers them all after the commit.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*commitReq, 0, 256)
	for {
		var first *commitReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			// Drain what was queued before Close; those callers wait.
			for {
				select {
				case r := <-s.reqs:
					s.run([]*commitReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		n := len(first.events)
	gather:
		for n < s.cfg.MaxBatchEvents && first.between == nil {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += len(r.events)
				if r.between != nil {
					break gather
				}
			default:
				break gather
			}
		}
		s.run(batch)
	}
}

// run commits the events of batch; a request to run a function between
// commits can only come last, and runs after the commit of the others.
func (s *Store) run(batch []*commitReq) {
	last := batch[len(batch)-1]
	if last.between == nil {
		s.commit(batch)
		return
	}
	if len(batch) > 1 {
		s.commit(batch[:len(batch)-1])
	}
	last.between()
	last.done <- nil
}

func (s *Store) commit(batch []*commitReq) {
	start := time.Now()
	var st *txState
	var failed *commitReq
	err := s.db.Update(func(tx *bbolt.Tx) error {
		st = s.newTxState(tx)
		for _, r := range batch {
			if r.merge != nil {
				if err := s.mergeStepTx(st, r.merge.rec); err != nil {
					failed = r
					return &eventError{fmt.Errorf("apply merge of %s into %s: %w", r.merge.rec.Loser, r.merge.rec.Survivor, err)}
				}
			}
			if r.note != nil {
				if err := s.applyNote(tx, r.note); err != nil {
					failed = r
					return &eventError{err}
				}
			}
			for i, e := range r.events {
				res, err := s.apply(st, e)
				if err != nil {
					failed = r
					return &eventError{fmt.Errorf("apply event %s: %w", e.MessageID, err)}
				}
				r.results[i] = res
			}
		}
		if err := noteApplied(tx, batch); err != nil {
			return err
		}
		if err := st.flush(); err != nil {
			return err
		}
		// Last, just before the commit: a request whose partition this
		// node no longer holds commits nothing (the others go on
		// without it, below).
		for _, r := range batch {
			if r.fence == nil {
				continue
			}
			if err := r.fence(); err != nil {
				failed = r
				return fmt.Errorf("check the partition's lease: %w", err)
			}
		}
		return nil
	})
	if st != nil {
		for _, tp := range st.procs {
			tp.Done(err == nil)
		}
	}
	s.metrics.CommitSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		s.profileCount.Add(st.profileDelta)
		events := 0
		for _, r := range batch {
			events += len(r.events)
			for i, res := range r.results {
				e := r.events[i]
				switch {
				case res.Duplicate:
					s.metrics.Duplicates.WithLabelValues(e.Source).Inc()
				case res.Dropped:
					s.metrics.Dropped.Inc()
				default:
					s.metrics.Accepted.WithLabelValues(e.Source, e.Type).Inc()
				}
			}
		}
		s.metrics.CommitEvents.Observe(float64(events))
		for _, l := range st.logs {
			s.log.Info(l.msg, l.args...)
		}
	} else {
		s.log.Error("commit events", "err", err, "requests", len(batch))
		err = fmt.Errorf("commit events: %w", err)
		var fe *flushError
		switch {
		case failed != nil && len(batch) > 1:
			// Nothing of the batch was applied. The request whose event
			// failed gets the error; the others commit together without
			// it, so one bad request never fails its neighbours.
			failed.done <- err
			rest := make([]*commitReq, 0, len(batch)-1)
			for _, r := range batch {
				if r != failed {
					rest = append(rest, r)
				}
			}
			s.commit(rest)
			return
		case errors.As(err, &fe) && len(batch) > 1:
			// A processor could not write what the batch left it (a pass
			// that fails to render, say) and cannot tell whose event it
			// was: halve the batch until the request is found, so it
			// alone gets the error and the others commit in batches.
			half := len(batch) / 2
			first, second := slices.Clone(batch[:half]), slices.Clone(batch[half:])
			s.commit(first)
			s.commit(second)
			return
		}
	}
	for _, r := range batch {
		r.done <- err
	}
}

// txState caches the profiles one transaction touches, so a batch of many
// events about one person decodes and encodes the profile once.
type txState struct {
	tx         *bbolt.Tx
	profiles   *bbolt.Bucket
	identities *bbolt.Bucket
	events     *bbolt.Bucket
	cache      map[string]*Profile
	dirty      map[string]bool
	// hot keeps what flush writes for later transactions (nil: no).
	hot          *hotProfiles
	profileDelta int64
	logs         []logLine
	procs        []TxProcessor
}

type logLine struct {
	msg  string
	args []any
}

func (s *Store) newTxState(tx *bbolt.Tx) *txState {
	st := newTxState(tx)
	st.hot = s.hot
	for _, p := range s.processors() {
		st.procs = append(st.procs, p.Begin(tx))
	}
	return st
}

func newTxState(tx *bbolt.Tx) *txState {
	st := &txState{
		tx:         tx,
		profiles:   tx.Bucket(bucketProfiles),
		identities: tx.Bucket(bucketIdentities),
		events:     tx.Bucket(bucketEvents),
		cache:      map[string]*Profile{},
		dirty:      map[string]bool{},
	}
	// Profile ids start with their creation time and messageIds are
	// kept in time order too, so new keys of these buckets mostly land
	// at the end: full pages halve the file and the pages a commit
	// writes. (bbolt's default, half-full pages, suits random inserts.)
	st.profiles.FillPercent = AppendFillPercent
	st.events.FillPercent = AppendFillPercent
	tx.Bucket(bucketMsgTime).FillPercent = AppendFillPercent
	return st
}

// AppendFillPercent is how full bbolt fills the pages of a bucket whose
// keys mostly grow (time- or sequence-ordered); a little room is left
// for values that grow in place.
const AppendFillPercent = 0.9

func (st *txState) get(id string) (*Profile, error) {
	if p, ok := st.cache[id]; ok {
		if p == nil {
			return nil, ErrNotFound
		}
		return p, nil
	}
	v := st.profiles.Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	p := st.hot.take(id, v)
	if p == nil {
		p = new(Profile)
		if err := decodeProfile(v, p); err != nil {
			return nil, fmt.Errorf("decode profile %s: %w", id, err)
		}
	}
	st.cache[id] = p
	return p, nil
}

// placeNew writes the record of a profile created in this transaction.
func (st *txState) placeNew(p *Profile) error {
	v, err := encodeProfile(p, nil)
	if err != nil {
		return fmt.Errorf("encode profile %s: %w", p.ID, err)
	}
	return st.profiles.Put([]byte(p.ID), v)
}

func (st *txState) put(p *Profile) {
	st.cache[p.ID] = p
	st.dirty[p.ID] = true
}

func (st *txState) remove(id string) {
	st.cache[id] = nil
	st.dirty[id] = true
}

// flushError is a processor's failure to flush, as opposed to one of
// bbolt's: which request caused it is not known.
type flushError struct{ err error }

func (e *flushError) Error() string { return e.err.Error() }
func (e *flushError) Unwrap() error { return e.err }

func (st *txState) flush() error {
	for _, tp := range st.procs {
		if err := tp.Flush(); err != nil {
			return &flushError{err}
		}
	}
	for id := range st.dirty {
		p := st.cache[id]
		if p == nil {
			st.hot.drop(id)
			if err := st.profiles.Delete([]byte(id)); err != nil {
				return err
			}
			continue
		}
		v, err := encodeProfile(p, nil)
		if err != nil {
			return fmt.Errorf("encode profile %s: %w", id, err)
		}
		if err := st.profiles.Put([]byte(id), v); err != nil {
			return err
		}
		// Kept before the commit, while no other writer can run: an
		// erasure after it drops what it erases. Should the commit
		// fail, the file keeps the old record, and take sees that.
		st.hot.keep(p, v)
	}
	if st.profileDelta != 0 {
		meta := st.tx.Bucket(bucketMeta)
		var cur int64
		if v := meta.Get(metaProfileCount); len(v) == 8 {
			cur = int64(binary.BigEndian.Uint64(v))
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(max(cur+st.profileDelta, 0)))
		return meta.Put(metaProfileCount, b[:])
	}
	return nil
}

// apply resolves the identity of one event, merges what it links, and
// stores it on the resulting profile.
func (s *Store) apply(st *txState, e *Event) (Result, error) {
	ids := s.res.extract(e)
	if e.Type == TypeAlias && strings.TrimSpace(e.PreviousID) != "" {
		prev := Identifier{Kind: KindUserID, Value: strings.TrimSpace(e.PreviousID)}
		if s.resolveTx(st.tx, prev) == "" {
			prev.Kind = KindAnonymousID
		}
		if !slices.Contains(ids, prev) {
			ids = append(ids, prev)
			s.res.sort(ids)
		}
	}
	// Which profiles do the identifiers point at, most trusted first?
	owner := make(map[Identifier]string, len(ids))
	var owners []string
	for _, id := range ids {
		if pid := string(st.identities.Get(identityKey(id))); pid != "" {
			owner[id] = pid
			if !slices.Contains(owners, pid) {
				owners = append(owners, pid)
			}
		}
	}
	if e.route != "" {
		// The cluster's identity index said whose event this is: that
		// profile, here or yet to be made with that id.
		owners = owners[:0]
		if _, err := st.get(e.route); err == nil {
			owners = append(owners, e.route)
		} else if !errors.Is(err, ErrNotFound) {
			return Result{}, err
		}
	}
	// A retry carries the original's identifiers, so its messageId is on
	// one of these profiles (dedupe.go).
	if e.MessageID != "" && st.seen(owners, e.MessageID) {
		return Result{Duplicate: true}, nil
	}
	if s.tombCount.Load() > 0 {
		for _, id := range ids {
			if tomb := s.tombstone(st.tx, id); tomb != nil && tomb.DropLater {
				return Result{Dropped: true}, nil
			}
		}
	}

	g, err := s.guard(st, e, ids, owner, owners)
	if err != nil {
		return Result{}, err
	}
	ids, owners = g.ids, g.owners

	res := Result{}
	var target *Profile
	if len(owners) == 0 {
		id := e.route
		if id != "" {
			if _, err := st.get(id); err == nil {
				// A routed event the guard kept off its profile gets a
				// profile of its own, as on a single node.
				id = ""
			}
		}
		if id == "" {
			if id, err = s.newProfileID(); err != nil {
				return Result{}, err
			}
		}
		now := s.now().UTC()
		target = &Profile{ID: id, CreatedAt: now, UpdatedAt: now}
		// Written now and again at flush: the record is then in the
		// page before its sidecars and before the next new profiles'
		// records, so the flush overwrites it in place. Inserted at
		// flush, each new profile's key would land in the middle of a
		// page grown by the whole commit's new profiles, and bbolt
		// shifts the rest of that page's keys for each.
		if err := st.placeNew(target); err != nil {
			return Result{}, err
		}
		st.put(target)
		st.profileDelta++
		res.Created = true
	} else {
		var err error
		if target, err = st.get(owners[0]); err != nil {
			return Result{}, err
		}
		for _, other := range owners[1:] {
			op, err := st.get(other)
			if errors.Is(err, ErrNotFound) {
				continue // merged away earlier in this event
			} else if err != nil {
				return Result{}, err
			}
			linking := linkingIDs(ids, owner, target, op)
			if kind, ok := s.mergeConflict(target, op); !ok {
				s.metrics.RefusedMerges.WithLabelValues(kind).Inc()
				target.addLedger(LedgerEntry{
					At: s.now().UTC(), Action: LedgerRefusedMerge, Profile: op.ID, Identifiers: linking,
					MessageID: e.MessageID, EventType: e.Type, Event: e.Event, Source: e.Source,
					Reason: fmt.Sprintf("merging would give the profile more than %d %s", s.res.limit(kind), kind),
				})
				st.logs = append(st.logs, logLine{"merge refused", []any{"profile", target.ID, "other", op.ID, "kind", kind, "message_id", e.MessageID}})
				continue
			}
			survivor, err := s.merge(st, target, op, e, linking)
			if err != nil {
				return Result{}, err
			}
			loser := op.ID
			if survivor.ID == op.ID {
				loser = target.ID
			}
			res.Merged = append(res.Merged, loser)
			target = survivor
		}
	}

	s.noteGuard(st, target, e, g)

	// Link the identifiers nobody held yet, all or none: when one would
	// break a limit, the event's whole identity change is refused, and
	// its traits and consent grants with it (they were said of someone
	// this profile cannot be).
	var link []Identifier
	for _, id := range ids {
		if owner[id] == "" && !target.HasIdentity(id) && !slices.Contains(e.foreign, id) {
			link = append(link, id)
		}
	}
	limited := g.limited
	if kind, over := s.overLimit(target, link); over {
		s.metrics.RefusedIDs.WithLabelValues(kind).Inc()
		target.addLedger(LedgerEntry{
			At: s.now().UTC(), Action: LedgerRefusedIdentifier, Identifiers: link,
			MessageID: e.MessageID, EventType: e.Type, Event: e.Event, Source: e.Source,
			Reason: fmt.Sprintf("profile already holds %d %s, the limit: none of the event's new identifiers were linked, and its traits and consent grants were not applied", s.res.limit(kind), kind),
		})
		st.logs = append(st.logs, logLine{"identifiers refused", []any{"profile", target.ID, "kind", kind, "message_id", e.MessageID}})
		link, limited = nil, true
	}
	for _, id := range link {
		if err := st.identities.Put(identityKey(id), []byte(target.ID)); err != nil {
			return Result{}, err
		}
		target.Identities = append(target.Identities, IdentityRecord{Kind: id.Kind, Value: id.Value, FirstSeen: e.Timestamp, Source: e.Source, Unverified: s.unverified(e)})
	}
	if !s.unverified(e) {
		target.confirm(ids)
	}

	if e.MessageID != "" {
		if err := st.remember(target.ID, e.MessageID, s.now().UnixNano()); err != nil {
			return Result{}, err
		}
	}
	if err := s.record(st, target, e, limited, s.res.claimedTraits(g.claimed)); err != nil {
		return Result{}, err
	}
	res.ProfileID = target.ID
	return res, nil
}

// linkingIDs are the event's identifiers held by either of two profiles.
func linkingIDs(ids []Identifier, owner map[Identifier]string, a, b *Profile) []Identifier {
	var out []Identifier
	for _, id := range ids {
		if o := owner[id]; o == a.ID || o == b.ID || a.HasIdentity(id) || b.HasIdentity(id) {
			out = append(out, id)
		}
	}
	return out
}

// mergeConflict reports whether a and b may merge; if not, the kind whose
// limit the merge would break.
func (s *Store) mergeConflict(a, b *Profile) (string, bool) {
	counts := map[string]int{}
	for _, r := range a.Identities {
		counts[r.Kind]++
	}
	for _, r := range b.Identities {
		if !a.HasIdentity(Identifier{Kind: r.Kind, Value: r.Value}) {
			counts[r.Kind]++
		}
	}
	for _, kind := range slices.Sorted(maps.Keys(counts)) {
		if counts[kind] > s.res.limit(kind) {
			return kind, false
		}
	}
	return "", true
}

// merge folds two profiles into the older one (survivorOf) and returns it.
func (s *Store) merge(st *txState, a, b *Profile, e *Event, linking []Identifier) (*Profile, error) {
	survivor, loser := survivorOf(a, b)
	return s.mergeInto(st, survivor, loser, e, linking, "one event carried identifiers of both profiles; the older profile survives")
}

// mergeInto folds loser into survivor, e being the event that caused it
// and reason why, and returns survivor.
func (s *Store) mergeInto(st *txState, survivor, loser *Profile, e *Event, linking []Identifier, reason string) (*Profile, error) {
	for _, r := range loser.Identities {
		if err := st.identities.Put(identityKey(Identifier{Kind: r.Kind, Value: r.Value}), []byte(survivor.ID)); err != nil {
			return nil, err
		}
	}
	aliases := st.tx.Bucket(bucketAliases)
	for _, id := range append([]string{loser.ID}, loser.MergedFrom...) {
		if err := aliases.Put([]byte(id), []byte(survivor.ID)); err != nil {
			return nil, err
		}
	}
	if err := s.moveEvents(st, loser.ID, survivor.ID); err != nil {
		return nil, err
	}
	if err := st.moveMessages(loser.ID, survivor.ID); err != nil {
		return nil, err
	}
	survivor.absorb(loser)
	for _, tp := range st.procs {
		if err := tp.Merged(survivor, loser.ID); err != nil {
			return nil, fmt.Errorf("merge %s into %s: %w", loser.ID, survivor.ID, err)
		}
	}
	survivor.addLedger(LedgerEntry{
		At: s.now().UTC(), Action: LedgerMerge, Profile: loser.ID, Identifiers: linking,
		MessageID: e.MessageID, EventType: e.Type, Event: e.Event, Source: e.Source,
		Reason: reason,
	})
	if err := s.trimEvents(st, survivor); err != nil {
		return nil, err
	}
	survivor.UpdatedAt = s.now().UTC()
	st.put(survivor)
	st.remove(loser.ID)
	st.profileDelta--
	s.metrics.Merges.Inc()
	st.logs = append(st.logs, logLine{"profiles merged", []any{"profile", survivor.ID, "merged", loser.ID, "message_id", e.MessageID}})
	return survivor, nil
}

func (s *Store) moveEvents(st *txState, from, to string) error {
	c := st.events.Cursor()
	prefix := []byte(from)
	type kv struct{ k, v []byte }
	var moved []kv
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		moved = append(moved, kv{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, m := range moved {
		nk := bytes.Clone(m.k)
		copy(nk, to)
		if err := st.events.Put(nk, m.v); err != nil {
			return err
		}
		if err := st.events.Delete(m.k); err != nil {
			return err
		}
	}
	return nil
}

// trimEvents keeps the MaxEvents most recent events of a profile.
func (s *Store) trimEvents(st *txState, p *Profile) error {
	excess := p.EventCount - s.cfg.MaxEvents
	if excess <= 0 {
		return nil
	}
	c := st.events.Cursor()
	prefix := []byte(p.ID)
	var old [][]byte
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(old) < excess; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := st.events.Delete(k); err != nil {
			return err
		}
	}
	p.EventCount -= len(old)
	return nil
}

// record stores the event on the profile and applies its traits and
// consent. A limited event applies only withdrawals of consent; the trait
// keys in skip are not applied.
func (s *Store) record(st *txState, p *Profile, e *Event, limited bool, skip []string) error {
	if e.Type == TypeIdentify {
		for k, v := range e.Traits {
			if limited || slices.Contains(skip, k) {
				continue
			}
			switch k {
			case "consent":
				continue
			case KindEmail, KindPhone:
				// Keep the usable spelling: channels send to this value.
				if raw, ok := v.(string); ok {
					if n := s.res.Normalize(k, raw); n != "" {
						v = n
					}
				}
			}
			p.setTrait(k, v, e.Timestamp, e.Source)
		}
		if c, ok := e.Traits["consent"].(map[string]any); ok {
			s.applyConsent(p, c, e, limited)
		}
	}
	if e.Type == TypeTrack && e.Event == EventConsentUpdated {
		s.applyConsent(p, e.Properties, e, limited)
	}
	if err := s.store(st, p, e); err != nil {
		return err
	}
	return s.process(st, p, e, 0)
}

// store appends an event to the profile's bounded log.
func (s *Store) store(st *txState, p *Profile, e *Event) error {
	seq, err := st.events.NextSequence()
	if err != nil {
		return err
	}
	v := e.stored
	if v == nil {
		if v, err = encodeEvent(e); err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
	}
	if err := st.events.Put(eventKey(p.ID, e.Timestamp, seq), v); err != nil {
		return err
	}
	p.EventCount++
	if e.Timestamp.After(p.LastSeenAt) {
		p.LastSeenAt = e.Timestamp
	}
	p.UpdatedAt = s.now().UTC()
	if err := s.trimEvents(st, p); err != nil {
		return err
	}
	st.put(p)
	return nil
}

// process hands a stored event to the processors from index from on; the
// events a processor derives (an audience entered) are stored and handed
// to the processors after it, never back to itself.
func (s *Store) process(st *txState, p *Profile, e *Event, from int) error {
	for i := from; i < len(st.procs); i++ {
		derived, err := st.procs[i].Event(p, e)
		if err != nil {
			return fmt.Errorf("process event: %w", err)
		}
		for _, d := range derived {
			if d.Source == "" {
				d.Source = SourceCartera
			}
			if err := s.store(st, p, d); err != nil {
				return err
			}
			if err := s.process(st, p, d, i+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyConsent orders consent by the server's receipt time (see
// Consent.overrides); an event made without one takes the store's clock.
// withdrawalsOnly drops the grants.
func (s *Store) applyConsent(p *Profile, c map[string]any, e *Event, withdrawalsOnly bool) {
	at := e.ReceivedAt
	if at.IsZero() {
		at = s.now()
	}
	at = at.UTC()
	for purpose, v := range c {
		if granted, ok := v.(bool); ok && !(granted && withdrawalsOnly) {
			p.setConsent(purpose, granted, at, e.Source, e.MessageID)
		}
	}
}

// tombstone is what remains of an erased identifier.
type tombstone struct {
	At        time.Time `json:"at"`
	DropLater bool      `json:"drop_later"`
}

func (s *Store) tombstone(tx *bbolt.Tx, id Identifier) *tombstone {
	v := tx.Bucket(bucketTombstones).Get(s.tombstoneKey(id))
	if v == nil {
		return nil
	}
	var t tombstone
	if err := json.Unmarshal(v, &t); err != nil {
		return nil
	}
	return &t
}
