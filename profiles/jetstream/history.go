package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// historyBatch is how many records PartitionHistory hands on at a time.
const historyBatch = 1000

// PartitionHistory hands batch the records of partition p the stream still
// holds, in order, up to the partition's last record when it began: what
// a backtest of the partition replays (profiles.Store.HistoryOf, which
// keeps those received within its window, by the events' own times; a
// single node's history reads its whole log too). Records trimmed below
// the partition's snapshots are not there.
func (l *Log) PartitionHistory(ctx context.Context, p int, batch func([][]byte) error) error {
	head, err := l.PartitionHead(ctx, p)
	if err != nil || head == 0 {
		return err
	}
	subject := l.PartitionSubject(p)
	first, err := l.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("partition %d's history: %w", p, err)
	}
	if first.Sequence > head {
		return nil
	}
	cons, err := l.js.OrderedConsumer(ctx, l.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first.Sequence, FilterSubjects: []string{subject},
	})
	if err != nil {
		return fmt.Errorf("partition %d's history: %w", p, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(historyBatch))
	if err != nil {
		return fmt.Errorf("partition %d's history: %w", p, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var recs [][]byte
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("partition %d's history: %w", p, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("partition %d's history: %w", p, err)
		}
		if meta.Sequence.Stream > head {
			break
		}
		recs = append(recs, m.Data())
		if meta.Sequence.Stream == head || meta.NumPending == 0 {
			break
		}
		if len(recs) == historyBatch {
			if err := batch(recs); err != nil {
				return err
			}
			recs = nil
		}
	}
	if len(recs) > 0 {
		return batch(recs)
	}
	return nil
}
