package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TrimConfig says how a node trims the records of the partitions it holds
// from the stream. A partition's records below its newest snapshot are
// kept by the snapshot (a new holder restores it and replays only what
// comes after): those that Retention lets go are purged, partition by
// partition. Records above a partition's snapshot are never trimmed, nor
// any record of a partition that has no snapshot yet.
type TrimConfig struct {
	// Every is how often the node trims (0: never).
	Every time.Duration
	// Retention is which records a partition's snapshot covers may go:
	// those stored longer ago than Retention.Age, and the oldest while the
	// stream is over Retention.MaxBytes.
	Retention Retention
}

func (c TrimConfig) validate() error {
	switch {
	case c.Every < 0:
		return fmt.Errorf("trim every %s: negative", c.Every)
	case c.Retention.Age < 0:
		return fmt.Errorf("profiles.log.retention: %s is negative", c.Retention.Age)
	case c.Retention.MaxBytes < 0:
		return fmt.Errorf("profiles.log.max_bytes: %d is negative", c.Retention.MaxBytes)
	}
	return nil
}

// retainBelow returns the offset below which r lets the records of the
// stream in state st go at now (st.FirstSeq: none), at most limit. The
// stream may have holes (purged partitions, see Node.Trim).
func (l *Log) retainBelow(ctx context.Context, st jetstream.StreamState, limit uint64, r Retention, now time.Time) (uint64, error) {
	if st.Msgs == 0 {
		return st.FirstSeq, nil
	}
	limit = min(limit, st.LastSeq+1)
	below := st.FirstSeq
	if r.MaxBytes > 0 && st.Bytes > uint64(r.MaxBytes) {
		// Records are of about one size: drop as many of the oldest as
		// the excess holds. (With holes, fewer than that go.)
		avg := max(st.Bytes/st.Msgs, 1)
		below = st.FirstSeq + (st.Bytes-uint64(r.MaxBytes)+avg-1)/avg
	}
	if below < limit {
		first, err := l.firstStoredAfter(ctx, below, limit, now.Add(-r.Age))
		if err != nil {
			return 0, err
		}
		below = first
	}
	return min(below, limit), nil
}

// firstStoredAfter returns the first offset in [lo, hi) from which on
// every record was stored after cutoff (hi: none is), by bisection over
// the offsets: the record at or after mid, of any partition (the stream
// may have holes: purged partitions, see Node.Trim).
func (l *Log) firstStoredAfter(ctx context.Context, lo, hi uint64, cutoff time.Time) (uint64, error) {
	every := l.cfg.Subject + ".*"
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := l.stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(every))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hi = mid // nothing at or after mid
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read record %d: %w", mid, err)
		}
		if m.Time.After(cutoff) {
			hi = mid
		} else {
			lo = max(m.Sequence, mid) + 1
		}
	}
	return lo, nil
}

// TrimPartition purges partition p's records below offset below.
func (l *Log) TrimPartition(ctx context.Context, p int, below uint64) error {
	if err := l.stream.Purge(ctx, jetstream.WithPurgeSubject(l.PartitionSubject(p)), jetstream.WithPurgeSequence(below)); err != nil {
		return fmt.Errorf("jetstream event log: trim partition %d below %d: %w", p, below, err)
	}
	return nil
}

// Trim purges, for each partition this node holds and has a snapshot of,
// the records below that snapshot which cfg.Trim.Retention lets go at
// now. It returns how many partitions it trimmed further.
func (n *Node) Trim(ctx context.Context, now time.Time) (int, error) {
	info, err := n.l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("trim: stream info: %w", err)
	}
	below, err := n.l.retainBelow(ctx, info.State, info.State.LastSeq+1, n.cfg.Trim.Retention, now)
	if err != nil {
		return 0, fmt.Errorf("trim: %w", err)
	}
	n.mu.Lock()
	var held []*lease
	for _, ls := range n.held {
		if !ls.releasing {
			held = append(held, ls)
		}
	}
	n.mu.Unlock()
	trimmed := 0
	for _, ls := range held {
		ls.mu.Lock()
		// The snapshot at snapOff is in the Object Store (this node
		// uploaded it, or found it at its claim): a holder after this one
		// starts from it or from a later one.
		upTo := min(below, ls.snapOff+1)
		skip := ls.lost || ls.snapOff == 0 || upTo <= ls.trimmed
		ls.mu.Unlock()
		if skip {
			continue
		}
		if err := n.l.TrimPartition(ctx, ls.p, upTo); err != nil {
			return trimmed, err
		}
		ls.mu.Lock()
		ls.trimmed = upTo
		ls.mu.Unlock()
		trimmed++
	}
	return trimmed, nil
}

// runTrims trims every cfg.Trim.Every until ctx ends.
func (n *Node) runTrims(ctx context.Context) {
	t := time.NewTicker(n.cfg.Trim.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if k, err := n.Trim(ctx, time.Now()); err != nil && ctx.Err() == nil {
			n.log.Warn("cluster: trim the stream", "err", err)
		} else if k > 0 {
			n.log.Info("cluster: stream trimmed below the snapshots", "partitions", k)
		}
	}
}
