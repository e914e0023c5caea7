package profiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// EventLog is where ingestion appends events and the applier reads them
// back in order: eventlog.Log on local disk, a JetStream stream in a
// cluster. Offsets are consecutive; Append returns once the records are
// durable, and Read returns only durable records.
type EventLog interface {
	// Append writes records in order and returns their offsets once
	// they are durable.
	Append(ctx context.Context, recs [][]byte) (first, last uint64, err error)
	// Read returns up to max records from offset from on, waiting until
	// at least one is durable or ctx ends.
	Read(ctx context.Context, from uint64, max int) ([][]byte, error)
	// Committed is the offset of the last durable record.
	Committed() uint64
}

// Keys of the meta bucket and the bucket of dead events:
//
//	meta        "log_applied" → 8-byte big-endian offset of the last event-log record applied
//	deadevents  8-byte big-endian log offset → JSON deadEvent (an event the processors failed
//	            on MaxApplyTries times, skipped so that the log goes on)
var (
	metaLogApplied   = []byte("log_applied")
	bucketDeadEvents = []byte("deadevents")
)

// ErrBacklogged is returned by Append when applying lags past the bounds
// of the config: nothing was appended; the client should retry after
// RetryAfter.
type ErrBacklogged struct {
	// Events and Lag are how far applying is behind.
	Events uint64
	Lag    time.Duration
	// RetryAfter is when to try again.
	RetryAfter time.Duration
}

func (e *ErrBacklogged) Error() string {
	if e.Lag == 0 {
		// A cluster node's partition: counted in records only.
		return fmt.Sprintf("processing is %d events behind ingestion, over its bound: retry after %s", e.Events, e.RetryAfter)
	}
	return fmt.Sprintf("processing is %d events (%s) behind ingestion, over its bound: retry after %s",
		e.Events, e.Lag.Round(time.Millisecond), e.RetryAfter)
}

// ErrNotApplied is returned by WaitApplied when the events acknowledged
// before were not applied within the wait.
var ErrNotApplied = errors.New("events acknowledged before are not applied yet")

// logState is the store's side of the event log: what it applied and
// when the records still to apply were appended.
type logState struct {
	log EventLog

	mu      sync.Mutex
	applied uint64
	changed chan struct{} // closed when applied moves
	// marks are (last offset, time) of appends not yet applied, in
	// offset order: the lag in seconds is the age of the first.
	marks []appendMark
}

type appendMark struct {
	last uint64
	at   time.Time
}

// deadEvent is what is kept of an event the processors kept failing on.
// The event itself stays in the log (within its retention) at Offset.
type deadEvent struct {
	Offset    uint64    `json:"offset"`
	At        time.Time `json:"at"`
	Type      string    `json:"type,omitempty"`
	Event     string    `json:"event,omitempty"`
	Source    string    `json:"source,omitempty"`
	MessageID string    `json:"messageId,omitempty"`
	Tries     int       `json:"tries"`
	Error     string    `json:"error"`
}

// AttachLog makes Append go through log; the caller then runs RunApplier.
// Without a log, Append applies synchronously, as Ingest does.
func (s *Store) AttachLog(log EventLog) error {
	committed := log.Committed()
	applied := s.AppliedOffset()
	if committed < applied {
		return fmt.Errorf("event log ends at offset %d but the store applied up to %d: the log is not this store's (open it with its first offset at %d)", committed, applied, applied+1)
	}
	ls := &logState{log: log, applied: applied, changed: make(chan struct{})}
	if committed > applied {
		// Records left unapplied by the last run: they count from now.
		ls.marks = append(ls.marks, appendMark{last: committed, at: s.now()})
	}
	s.elog = ls
	return nil
}

// AppliedOffset is the offset of the last event-log record whose effects
// are committed in the store (0: none).
func (s *Store) AppliedOffset() uint64 {
	if s.elog != nil {
		s.elog.mu.Lock()
		defer s.elog.mu.Unlock()
		return s.elog.applied
	}
	var off uint64
	_ = s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaLogApplied); len(v) == 8 {
			off = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return off
}

// LogCommitted is the offset of the last acknowledged event (0 without a
// log).
func (s *Store) LogCommitted() uint64 {
	if s.elog == nil {
		return 0
	}
	return s.elog.log.Committed()
}

// Lag says how far applying is behind the log: in events, and the age of
// the oldest event not applied.
func (s *Store) Lag() (events uint64, age time.Duration) {
	if s.elog == nil {
		return 0, 0
	}
	committed := s.elog.log.Committed()
	s.elog.mu.Lock()
	defer s.elog.mu.Unlock()
	if committed > s.elog.applied {
		events = committed - s.elog.applied
	}
	if len(s.elog.marks) > 0 && events > 0 {
		age = max(s.now().Sub(s.elog.marks[0].at), 0)
	}
	return events, age
}

// Append acknowledges events: once it returns they are durable in the
// event log, and the applier applies them shortly after (WaitApplied waits
// for that). It returns the offset of the last one. When applying lags
// past the config's bounds it appends nothing and returns *ErrBacklogged.
// Without an event log it applies them at once, as Ingest.
func (s *Store) Append(ctx context.Context, events []*Event) (uint64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if s.elog == nil {
		_, err := s.Ingest(ctx, events)
		return 0, err
	}
	if n, age := s.Lag(); n > uint64(s.cfg.Log.MaxLagEvents) || age > s.cfg.Log.MaxLag {
		return 0, &ErrBacklogged{Events: n, Lag: age, RetryAfter: s.cfg.Log.RetryAfter}
	}
	recs := make([][]byte, len(events))
	for i, e := range events {
		v, err := encodeEvent(e)
		if err != nil {
			return 0, fmt.Errorf("encode event: %w", err)
		}
		recs[i] = v
	}
	at := s.now()
	_, last, err := s.elog.log.Append(ctx, recs)
	if err != nil {
		return 0, fmt.Errorf("append to the event log: %w", err)
	}
	s.elog.mark(last, at)
	return last, nil
}

func (ls *logState) mark(last uint64, at time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if last <= ls.applied {
		return
	}
	i := sort.Search(len(ls.marks), func(i int) bool { return ls.marks[i].last > last })
	ls.marks = append(ls.marks, appendMark{})
	copy(ls.marks[i+1:], ls.marks[i:])
	ls.marks[i] = appendMark{last: last, at: at}
}

func (ls *logState) advance(through uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if through <= ls.applied {
		return
	}
	ls.applied = through
	i := 0
	for i < len(ls.marks) && ls.marks[i].last <= through {
		i++
	}
	ls.marks = append(ls.marks[:0], ls.marks[i:]...)
	close(ls.changed)
	ls.changed = make(chan struct{})
}

// WaitApplied waits until every event acknowledged up to offset is
// applied, at most until ctx ends (then ErrNotApplied).
func (s *Store) WaitApplied(ctx context.Context, offset uint64) error {
	if s.elog == nil {
		return nil
	}
	for {
		s.elog.mu.Lock()
		applied, changed := s.elog.applied, s.elog.changed
		s.elog.mu.Unlock()
		if applied >= offset {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: applied up to %d of %d", ErrNotApplied, applied, offset)
		}
	}
}

// RunApplier applies the event log from the offset the store applied,
// in order, until ctx ends or the store closes. Each commit stores the
// offset it applied through in the same transaction, so a restart goes on
// exactly after it (and messageId dedupe guards the rest). An event the
// processors fail on MaxApplyTries times is recorded as dead and skipped.
//
// Like the committer's group commit, each read takes everything appended
// while the previous commit ran (up to MaxBatchEvents): the slower the
// commits, the larger the next one. (Reading ahead while a commit runs
// was tried: it split the log into many small commits and tripled the
// event → action latency at half load.)
func (s *Store) RunApplier(ctx context.Context) {
	if s.elog == nil {
		return
	}
	// A log whose records may be routed (a cluster's identity index in
	// front of it) carries merge steps and events for profiles merged
	// away too: this store then plays every partition's part.
	fwd, _ := s.elog.log.(Forwarder)
	backoff := 10 * time.Millisecond
	for {
		from := s.AppliedOffset() + 1
		recs, err := s.elog.log.Read(ctx, from, s.cfg.MaxBatchEvents)
		if err == nil {
			offs := make([]uint64, len(recs))
			for i := range offs {
				offs[i] = from + uint64(i)
			}
			if fwd != nil {
				err = s.applyRecords(ctx, nil, offs, recs, fwd)
			} else {
				err = s.applySpan(ctx, nil, offs, decodeRecords(recs), recs)
			}
		}
		switch {
		case err == nil:
			backoff = 10 * time.Millisecond
			continue
		case ctx.Err() != nil, errors.Is(err, ErrClosed):
			return
		}
		s.log.Error("apply the event log", "offset", from, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// decodeRecords decodes log records into events, a large batch on two
// goroutines; a record that does not decode gives nil (applySpan records
// it as dead).
func decodeRecords(recs [][]byte) []*Event {
	events := make([]*Event, len(recs))
	decode := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			route, body := RecordRoute(recs[i])
			foreign, body, err := splitForeign(body)
			var e Event
			if err == nil && decodeEvent(body, &e) == nil {
				e.stored, e.route, e.foreign = body, route, foreign
				events[i] = &e
			}
		}
	}
	if len(recs) < 256 {
		decode(0, len(recs))
		return events
	}
	half := len(recs) / 2
	var wg sync.WaitGroup
	wg.Go(func() { decode(0, half) })
	decode(half, len(recs))
	wg.Wait()
	return events
}

// applySpan applies the records at offsets offs in one commit; when that
// fails, in halves, down to the one event that fails, so that only an
// event that keeps failing is skipped. t is the partition they belong to
// (nil: the store's own event log).
func (s *Store) applySpan(ctx context.Context, t *partTarget, offs []uint64, events []*Event, recs [][]byte) error {
	if len(events) == 1 {
		return s.applyOne(ctx, t, offs[0], events[0], recs[0])
	}
	if !slices.Contains(events, nil) {
		err := s.submitApply(ctx, t, events, offs[len(offs)-1])
		if err == nil || !isEventError(err) {
			return err
		}
	}
	half := len(events) / 2
	if err := s.applySpan(ctx, t, offs[:half], events[:half], recs[:half]); err != nil {
		return err
	}
	return s.applySpan(ctx, t, offs[half:], events[half:], recs[half:])
}

// eventError is a failure to apply one request's events (a processor's
// error), as opposed to the store's own (a full disk): only the former
// can make an event dead.
type eventError struct{ err error }

func (e *eventError) Error() string { return e.err.Error() }
func (e *eventError) Unwrap() error { return e.err }

func isEventError(err error) bool {
	var ee *eventError
	var fe *flushError
	return errors.As(err, &ee) || errors.As(err, &fe)
}

func (s *Store) applyOne(ctx context.Context, t *partTarget, offset uint64, e *Event, raw []byte) error {
	var err error
	tries := 0
	if e == nil {
		var probe Event
		err = fmt.Errorf("decode event-log record: %w", decodeEvent(raw, &probe))
	} else {
		tries, err = s.retry(ctx, func() error { return s.submitApply(ctx, t, []*Event{e}, offset) })
		if err == nil || !isEventError(err) {
			// Applied, or the store itself failed: RunApplier
			// retries without counting it against the event.
			return err
		}
	}
	dead := &deadEvent{Offset: offset, At: s.now().UTC(), Tries: tries, Error: err.Error()}
	if e != nil {
		dead.Type, dead.Event, dead.Source, dead.MessageID = e.Type, e.Event, e.Source, e.MessageID
	}
	return s.recordDead(ctx, t, dead)
}

// retry runs apply until it succeeds, fails for the store rather than for
// the records (not an eventError), or has failed MaxApplyTries times,
// waiting a little longer before each try; it returns the tries made and
// the last error.
func (s *Store) retry(ctx context.Context, apply func() error) (tries int, err error) {
	for tries < s.cfg.Log.MaxApplyTries {
		if tries > 0 {
			select {
			case <-ctx.Done():
				return tries, ctx.Err()
			case <-time.After(time.Duration(tries) * 20 * time.Millisecond):
			}
		}
		tries++
		if err = apply(); err == nil || !isEventError(err) {
			return tries, err
		}
	}
	return tries, err
}

// recordDead records a log record the processors keep failing on (or that
// does not decode) as dead, and goes on after it.
func (s *Store) recordDead(ctx context.Context, t *partTarget, dead *deadEvent) error {
	// Logged without the event's contents: its type and where it is.
	s.log.Error("dead event: skipped after failed applies", "offset", dead.Offset, "type", dead.Type, "event", dead.Event, "source", dead.Source, "tries", dead.Tries)
	s.metrics.DeadEvents.Inc()
	req := &commitReq{dead: dead, through: dead.Offset, done: make(chan error, 1)}
	t.prepare(req)
	if err := s.submit(ctx, req); err != nil {
		return fmt.Errorf("record dead event at offset %d: %w", dead.Offset, err)
	}
	s.advance(t, dead.Offset)
	return nil
}

func (s *Store) submitApply(ctx context.Context, t *partTarget, events []*Event, through uint64) error {
	req := &commitReq{events: events, results: make([]Result, len(events)), through: through, done: make(chan error, 1)}
	t.prepare(req)
	if err := s.submit(ctx, req); err != nil {
		return err
	}
	s.advance(t, through)
	return nil
}

// advance notes that the records of t (nil: the store's event log) are
// committed through offset through.
func (s *Store) advance(t *partTarget, through uint64) {
	if t == nil {
		s.elog.advance(through)
		return
	}
	t.through = max(t.through, through)
}

// noteApplied stores, within the commit's transaction, the offsets its
// log records reach (the store's event log's, and each partition's) and
// the dead events it records.
func noteApplied(tx *bbolt.Tx, batch []*commitReq) error {
	var through uint64
	meta := tx.Bucket(bucketMeta)
	for _, r := range batch {
		if r.appliedKey != nil {
			if err := putOffset(meta, r.appliedKey, r.through); err != nil {
				return err
			}
		}
		if r.dead != nil {
			v, err := json.Marshal(r.dead)
			if err != nil {
				return err
			}
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], r.dead.Offset)
			if err := tx.Bucket(bucketDeadEvents).Put(k[:], v); err != nil {
				return err
			}
		}
		if r.appliedKey == nil {
			through = max(through, r.through)
		}
	}
	return putOffset(meta, metaLogApplied, through)
}

// putOffset raises the offset at key of the meta bucket to off (never
// lowers it; 0 writes nothing).
func putOffset(meta *bbolt.Bucket, key []byte, off uint64) error {
	if off == 0 {
		return nil
	}
	if v := meta.Get(key); len(v) == 8 && binary.BigEndian.Uint64(v) >= off {
		return nil
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], off)
	return meta.Put(key, b[:])
}

// DeadEvents returns the offsets of the events recorded as dead, oldest
// first, with what was kept of each as JSON.
func (s *Store) DeadEvents() (map[uint64][]byte, error) {
	out := map[uint64][]byte{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDeadEvents).ForEach(func(k, v []byte) error {
			out[binary.BigEndian.Uint64(k)] = bytes.Clone(v)
			return nil
		})
	})
	return out, err
}
