package profiles

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
)

// In cluster mode a node applies only the partitions it holds a lease on,
// each from its own reader (profiles/jetstream), into this one store:
//
//	meta  "log_applied/<p>" → 8-byte big-endian offset (stream sequence) of
//	      the last record of partition p applied here
//
// The offsets of a partition ascend but are not consecutive: the records
// of the other partitions lie between them.

// ErrFenced is returned (wrapped) by a PartitionLog's Fence or Checkpoint
// when this node no longer holds the partition, and by ApplyPartition,
// which then stops at once.
var ErrFenced = errors.New("this node no longer holds the partition")

// Record is one event-log record of a partition, at its offset.
type Record struct {
	Offset uint64
	Data   []byte
}

// PartitionLog is one partition of a cluster's event log as the node that
// holds it reads it (profiles/jetstream's partition reader).
type PartitionLog interface {
	// Read returns up to max records from offset from on, in order,
	// waiting until there is one or ctx ends.
	Read(ctx context.Context, from uint64, max int) ([]Record, error)
	// Fence fails, wrapping ErrFenced, once this node no longer holds
	// the partition. It is called in the write transaction just before
	// each commit of the partition's records; a failure rolls them back.
	Fence() error
	// Checkpoint is told, after each commit, the offset the partition
	// is applied through, for its next owner to start after.
	Checkpoint(through uint64) error
}

// partTarget is a partition being applied: where its offset is kept and
// how its commits are fenced. A nil *partTarget is the store's own event
// log.
type partTarget struct {
	key     []byte
	fence   func() error
	through uint64
}

func (t *partTarget) prepare(req *commitReq) {
	if t != nil {
		req.appliedKey, req.fence = t.key, t.fence
	}
}

func partitionKey(p int) []byte { return []byte("log_applied/" + strconv.Itoa(p)) }

// PartitionApplied is the offset through which partition p is applied in
// this store (0: none of it).
func (s *Store) PartitionApplied(p int) uint64 {
	var off uint64
	_ = s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(partitionKey(p)); len(v) == 8 {
			off = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return off
}

// partitionPoll is how often WaitPartition looks at the offset applied.
const partitionPoll = 2 * time.Millisecond

// WaitPartition waits until partition p is applied in this store through
// offset, or ctx ends (ErrNotApplied).
func (s *Store) WaitPartition(ctx context.Context, p int, offset uint64) error {
	for {
		applied := s.PartitionApplied(p)
		if applied >= offset {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: partition %d at %d of %d", ErrNotApplied, p, applied, offset)
		case <-time.After(partitionPoll):
		}
	}
}

// ApplyPartition applies partition p of a cluster's event log from offset
// from on (or after what this store applied of it, if that is further),
// until ctx ends (after the commit in flight and its checkpoint), the
// store closes, or the partition is fenced: then it returns ErrFenced at
// once, having committed nothing more of it. Each
// commit stores the partition's offset in the same transaction, checks
// the fence last, and is then checkpointed; a record this store applied
// before is recognized by its messageId. Partitions applied concurrently
// share the store's group commits.
func (s *Store) ApplyPartition(ctx context.Context, p int, from uint64, log PartitionLog) error {
	t := &partTarget{key: partitionKey(p), fence: log.Fence}
	t.through = max(s.PartitionApplied(p), from-min(from, 1))
	fwd, _ := log.(Forwarder)
	if app, ok := log.(PartitionAppender); ok {
		// IngestFor goes through the stream while this runs (partingest.go).
		pi := &partIngest{p: p, log: app}
		s.partIngest.Store(pi)
		defer s.partIngest.CompareAndSwap(pi, nil)
	}
	backoff := 10 * time.Millisecond
	for {
		recs, err := log.Read(ctx, t.through+1, s.cfg.MaxBatchEvents)
		if err == nil {
			before := t.through
			// A commit once read is seen through to its checkpoint even
			// if ctx ends meanwhile: the next owner starts after it.
			err = s.applyPartRecords(context.WithoutCancel(ctx), t, recs, fwd)
			if t.through > before {
				if cerr := log.Checkpoint(t.through); cerr != nil && err == nil {
					err = cerr
				}
			}
		}
		switch {
		case err == nil:
			backoff = 10 * time.Millisecond
			continue
		case errors.Is(err, ErrFenced):
			return fmt.Errorf("apply partition %d: %w", p, err)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrClosed):
			return ErrClosed
		}
		s.log.Error("apply partition", "partition", p, "offset", t.through+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
