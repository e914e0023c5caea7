package profiles

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Events a partition's store is asked to record itself (IngestFor: a
// tracked open or click, an unsubscribe, a delivery's outcome, a trait a
// journey sets) go through the cluster's stream while the store applies a
// partition whose log can take them (PartitionAppender): a new owner of
// the partition restores the last snapshot and replays the stream after
// it, so an event committed straight into the file after that snapshot
// would be lost when its node dies. IngestFor appends the event addressed
// to its profile and returns once this store has applied it.

// PartitionAppender is what a PartitionLog offers when the store may
// append records of its own to the partition's stream (profiles/jetstream's
// lease of the partition).
type PartitionAppender interface {
	// AppendRecords appends records of the partition and returns the
	// offset of the last once they are durable; ErrOtherPartition (and
	// nothing appended) when one of them belongs to another partition.
	AppendRecords(ctx context.Context, recs [][]byte) (last uint64, err error)
}

// ErrOtherPartition is returned by PartitionAppender.AppendRecords for a
// record of another partition: a stream partitioned by user id, not by
// profile (no identity index), where a record addressed to a profile
// lands elsewhere. IngestFor then commits the event straight into the
// file, as it does outside a cluster.
var ErrOtherPartition = errors.New("the record belongs to another partition")

// partIngest is the partition a store applies, and its log, while
// IngestFor goes through it.
type partIngest struct {
	p   int
	log PartitionAppender
}

// partIngestWait bounds IngestFor's wait for its event to be applied when
// its ctx has no deadline.
const partIngestWait = 30 * time.Second

// ingestThroughLog is IngestFor on a store applying a partition: e is
// appended addressed to profileID, and applied by ApplyPartition.
func (s *Store) ingestThroughLog(ctx context.Context, pi *partIngest, profileID string, e *Event) (Result, error) {
	dup := false
	if e.MessageID != "" {
		_ = s.db.View(func(tx *bbolt.Tx) error {
			dup = tx.Bucket(bucketProfiles).Get(messageKey(profileID, e.MessageID)) != nil ||
				tx.Bucket(bucketMessages).Get([]byte(e.MessageID)) != nil
			return nil
		})
	}
	body, err := encodeEvent(e)
	if err != nil {
		return Result{}, fmt.Errorf("encode event: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, partIngestWait)
		defer cancel()
	}
	last, err := pi.log.AppendRecords(ctx, [][]byte{RoutedRecord(profileID, body)})
	if errors.Is(err, ErrOtherPartition) {
		res, err := s.Ingest(ctx, []*Event{e})
		if err != nil {
			return Result{}, err
		}
		return res[0], nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("append to partition %d: %w", pi.p, err)
	}
	if err := s.WaitPartition(ctx, pi.p, last); err != nil {
		return Result{}, err
	}
	return Result{ProfileID: profileID, Duplicate: dup}, nil
}
