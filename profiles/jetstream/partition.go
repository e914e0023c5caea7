package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
)

// The cluster's KV bucket <Stream>_META (no TTL, one revision a key):
//
//	partitions      the partition count, decimal, written once by the first
//	                node; a node configured with another count refuses to start
//	applied.<p>     the offset (stream sequence) through which partition p is
//	                applied by its owner, decimal; its revision is the owner's
//	                checkpoint token (node.go)
const (
	keyPartitions = "partitions"
)

func checkpointKey(p int) string { return "applied." + strconv.Itoa(p) }

// metaBucket is the name of the cluster's KV bucket.
func (c Config) metaBucket() string { return c.Stream + "_META" }

// openBucket opens a KV bucket, creating it as cfg if it is missing.
func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return untilAnswered(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return openBucketOnce(ctx, js, cfg) })
}

func openBucketOnce(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another node created it meanwhile.
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open kv bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// openMeta opens the cluster's KV bucket and checks (or, first, records)
// the partition count there: every node of a cluster must partition
// events the same way.
func (l *Log) openMeta(ctx context.Context) error {
	bucket := l.cfg.metaBucket()
	kv, err := openBucket(ctx, l.js, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "Cartera cluster: partition count and checkpoints",
		History: 1, Storage: jetstream.FileStorage, Replicas: l.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	want := strconv.Itoa(l.cfg.Partitions)
	_, err = kv.Create(ctx, keyPartitions, []byte(want))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, keyPartitions)
		if gerr != nil {
			return fmt.Errorf("read the partition count from kv bucket %s: %w", bucket, gerr)
		}
		if got := string(e.Value()); got != want {
			return fmt.Errorf("cluster.partitions: the cluster was created with %s partitions (kv bucket %s, key %s) and this node's config says %d; the partition count cannot change", got, bucket, keyPartitions, l.cfg.Partitions)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("record the partition count in kv bucket %s: %w", bucket, err)
	}
	l.meta = kv
	return nil
}

// Partitions is the cluster's partition count.
func (l *Log) Partitions() int { return l.cfg.Partitions }

// PartitionSubject is the stream subject of partition p.
func (l *Log) PartitionSubject(p int) string { return l.cfg.Subject + "." + strconv.Itoa(p) }

// PartitionHead is the offset of partition p's last record in the stream
// now (0: it has none).
func (l *Log) PartitionHead(ctx context.Context, p int) (uint64, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, l.PartitionSubject(p))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("jetstream event log: the last record of partition %d: %w", p, err)
	}
	return m.Sequence, nil
}

// partReader reads one partition of the stream, with an ordered consumer
// filtered to its subject: records at their stream sequences, the other
// partitions' skipped by the server.
type partReader struct {
	l       *Log
	subject string
	// stop ends a Read in progress and every later one with err.
	stop     chan struct{}
	stopErr  error
	stopOnce sync.Once

	mu   sync.Mutex
	feed *feed
	// prog is how far the partition's reader is behind the stream.
	prog progress
}

func (l *Log) newPartReader(p int) *partReader {
	return &partReader{l: l, subject: l.PartitionSubject(p), stop: make(chan struct{})}
}

// halt makes Read return err from now on (wrapping profiles.ErrFenced:
// the node gave the partition up or lost it).
func (r *partReader) halt(err error) {
	r.stopOnce.Do(func() {
		r.stopErr = err
		close(r.stop)
	})
}

func (r *partReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.feed != nil {
		r.feed.close()
		r.feed = nil
	}
}

// nextStored is when JetStream stored the partition's first record the
// reader has not read (zero: there is none).
func (r *partReader) nextStored(ctx context.Context) (time.Time, error) {
	m, err := r.l.stream.GetMsg(ctx, r.prog.next.Load(), jetstream.WithGetMsgSubject(r.subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("jetstream event log: read %s's next record: %w", r.subject, err)
	}
	return m.Time, nil
}

// Read returns up to max records of the partition from offset from on,
// waiting until there is one, ctx ends or the reader is halted.
func (r *partReader) Read(ctx context.Context, from uint64, max int) ([]profiles.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// A halt wins over a closed log: the node gave the partition up.
	select {
	case <-r.stop:
		return nil, r.stopErr
	default:
	}
	select {
	case <-r.l.stop:
		return nil, ErrClosed
	default:
	}
	if r.feed != nil && r.feed.next != from {
		r.feed.close()
		r.feed = nil
	}
	if r.feed == nil {
		f, err := r.l.startFeed(ctx, from, &r.prog, r.subject)
		if err != nil {
			return nil, err
		}
		r.feed = f
	}
	f := r.feed
	var out []profiles.Record
	take := func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("jetstream event log: read %s at %d: %w", r.subject, f.next, err)
		}
		seq := meta.Sequence.Stream
		if seq < f.next {
			return fmt.Errorf("jetstream event log: read %s: expected a sequence from %d, got %d", r.subject, f.next, seq)
		}
		out = append(out, profiles.Record{Offset: seq, Data: m.Data()})
		f.next = seq + 1
		r.prog.read.Store(meta.Sequence.Consumer)
		r.prog.next.Store(f.next)
		return nil
	}
	broken, err := f.gather(ctx, max, take, func(err error) error {
		return fmt.Errorf("jetstream event log: read %s from %d: %w", r.subject, from, err)
	}, halt{r.stop, func() error { return r.stopErr }}, halt{r.l.stop, closedErr})
	if broken {
		f.close()
		r.feed = nil
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
