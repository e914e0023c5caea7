package profiles

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// ErrNoHistory is returned by History for a store without an event log.
var ErrNoHistory = errors.New("no event log: history needs serve's event log")

// historyBatch is how many records History reads at a time.
const historyBatch = 1000

// History calls fn with every event the event log still holds that was
// received at or after since, in log order, up to the last one
// acknowledged when it began: what a backtest replays. The events of
// people erased since are skipped (an event that carries an identifier
// erased after it was received) and counted in skipped; so are records
// that no longer decode. It reads the log only, never the store's state.
func (s *Store) History(ctx context.Context, since time.Time, fn func(*Event) error) (skipped int, err error) {
	if s.elog == nil {
		return 0, ErrNoHistory
	}
	firster, ok := s.elog.log.(interface {
		FirstOffset(context.Context) (uint64, error)
	})
	if !ok {
		return 0, ErrNoHistory
	}
	from, err := firster.FirstOffset(ctx)
	if err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	last := s.elog.log.Committed()
	return s.HistoryOf(ctx, since, func(batch func([][]byte) error) error {
		for from <= last {
			recs, err := s.elog.log.Read(ctx, from, int(min(uint64(historyBatch), last-from+1)))
			if err != nil {
				return fmt.Errorf("history: read the event log at %d: %w", from, err)
			}
			from += uint64(len(recs))
			if err := batch(recs); err != nil {
				return err
			}
		}
		return nil
	}, fn)
}

// HistoryOf is History over records read by read, which hands each batch
// of them, in order, to batch (a cluster partition's records, from its
// subject of the stream). Merge steps and notes are not events: they are
// passed over, not counted as skipped.
func (s *Store) HistoryOf(ctx context.Context, since time.Time, read func(batch func([][]byte) error) error, fn func(*Event) error) (skipped int, err error) {
	err = read(func(recs [][]byte) error {
		events := recs[:0:0]
		for _, rec := range recs {
			if _, body := RecordRoute(rec); IsMergeBody(body) || isNoteBody(body) {
				continue
			}
			events = append(events, rec)
		}
		var keep []*Event
		for _, e := range decodeRecords(events) {
			switch {
			case e == nil:
				skipped++
			case e.ReceivedAt.Before(since):
			default:
				keep = append(keep, e)
			}
		}
		erased, err := s.erasedSince(keep)
		if err != nil {
			return err
		}
		for i, e := range keep {
			if erased[i] {
				skipped++
				continue
			}
			e.stored = nil
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	return skipped, err
}

// erasedSince reports, for each event, whether it carries an identifier
// erased after the event was received.
func (s *Store) erasedSince(events []*Event) ([]bool, error) {
	out := make([]bool, len(events))
	if s.tombCount.Load() == 0 || len(events) == 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		for i, e := range events {
			for _, id := range s.res.extract(e) {
				if t := s.tombstone(tx, id); t != nil && t.At.After(e.ReceivedAt) {
					out[i] = true
					break
				}
			}
		}
		return nil
	})
	return out, err
}
