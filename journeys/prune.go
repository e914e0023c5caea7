package journeys

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// DefaultRetention is how long a finished instance (and the idempotency
// keys of its actions) is kept after it was entered.
const DefaultRetention = 90 * 24 * time.Hour

// prunePage bounds the keys one pruning transaction looks at, so ingestion
// is never held long.
const prunePage = 5000

// PruneStats says what one Prune removed.
type PruneStats struct {
	Instances  int // finished instances entered before the retention
	OutboxKeys int // idempotency keys of those instances' actions
	Sends      int // send records older than every cap and priority window
	Hours      int // journeys' hours of counters (one tally each) before the retention
}

// Prune removes what only grows: finished instances entered more than
// retention before now with the idempotency keys of their actions, and the
// send records no frequency cap or priority window can count any more. It
// works a page per transaction and stops when ctx ends.
func (e *Engine) Prune(ctx context.Context, now time.Time, retention time.Duration) (PruneStats, error) {
	var st PruneStats
	if retention <= 0 {
		retention = DefaultRetention
	}
	if err := e.pruneInstances(ctx, now.Add(-retention), &st); err != nil {
		return st, err
	}
	if err := e.pruneHourly(ctx, now.Add(-retention), &st); err != nil {
		return st, err
	}
	return st, e.pruneSends(ctx, now.Add(-e.sendWindow()), &st)
}

// sendWindow is the longest span a send record is read over: the longest
// frequency cap or the priority window (at least a day).
func (e *Engine) sendWindow() time.Duration {
	w := 24 * time.Hour
	if set := e.set.Load(); set != nil && set.Policy != nil {
		w = max(w, set.Policy.PriorityWindow)
		for _, c := range set.Policy.Caps {
			w = max(w, c.Per)
		}
	}
	return w
}

// pruneInstances walks instances in id order (the order they were
// entered) up to the first entered after cutoff.
func (e *Engine) pruneInstances(ctx context.Context, cutoff time.Time, st *PruneStats) error {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := false
		err := e.db.Update(func(tx *bbolt.Tx) error {
			ins, keys := tx.Bucket(bucketInstances), tx.Bucket(bucketOutboxKey)
			c := ins.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var doomed [][]byte
			var prefixes []string
			for n := 0; n < prunePage; n++ {
				if n > 0 {
					k, v = c.Next()
				}
				if k == nil {
					done = true
					break
				}
				var in Instance
				if err := decodeInstance(v, &in); err != nil {
					return fmt.Errorf("prune instance %x: %w", k, err)
				}
				if !in.EnteredAt.Before(cutoff) {
					done = true // later ones were entered later still
					break
				}
				after = bytes.Clone(k)
				if !in.Done {
					continue
				}
				doomed = append(doomed, bytes.Clone(k))
				prefixes = append(prefixes, fmt.Sprintf("%s/%s/%d/", in.Journey, in.Version, in.ID))
			}
			for _, k := range doomed {
				if err := ins.Delete(k); err != nil {
					return err
				}
			}
			st.Instances += len(doomed)
			for _, p := range prefixes {
				kc := keys.Cursor()
				for k, _ := kc.Seek([]byte(p)); k != nil && bytes.HasPrefix(k, []byte(p)); k, _ = kc.Seek([]byte(p)) {
					if err := keys.Delete(k); err != nil {
						return err
					}
					st.OutboxKeys++
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prune journey instances: %w", err)
		}
		if done {
			return nil
		}
	}
}

// pruneSends removes send records made before cutoff.
func (e *Engine) pruneSends(ctx context.Context, cutoff time.Time, st *PruneStats) error {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := false
		err := e.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketSends)
			c := b.Cursor()
			k, _ := c.First()
			if after != nil {
				k, _ = c.Seek(after)
			}
			var doomed [][]byte
			for n := 0; n < prunePage; n++ {
				if n > 0 {
					k, _ = c.Next()
				}
				if k == nil {
					done = true
					break
				}
				after = bytes.Clone(k)
				if len(k) >= 16 && int64(binary.BigEndian.Uint64(k[len(k)-16:len(k)-8])) < cutoff.UnixNano() {
					doomed = append(doomed, bytes.Clone(k))
				}
			}
			for _, k := range doomed {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			st.Sends += len(doomed)
			return nil
		})
		if err != nil {
			return fmt.Errorf("prune journey sends: %w", err)
		}
		if done {
			return nil
		}
	}
}

// RunPruner prunes every interval until ctx ends.
func (e *Engine) RunPruner(ctx context.Context, interval, retention time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := e.Prune(ctx, e.clock.Now(), retention)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			e.log.Error("prune journeys", "err", err)
		case st != PruneStats{}:
			e.log.Info("journeys pruned", "instances", st.Instances, "outbox_keys", st.OutboxKeys, "sends", st.Sends)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
