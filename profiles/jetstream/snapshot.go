package jetstream

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"cartera/profiles"
)

// The snapshot bucket <Stream>_SNAPSHOTS (a JetStream Object Store, file
// storage, replicated as the stream): one object per partition, named
// p<NNNN>, replaced by each newer snapshot. An object is a whole copy of
// the partition's bbolt file (profiles.PartitionFiles.Snapshot) with the
// metadata
//
//	offset  the offset the copy is applied through (read in the copy's own
//	        transaction, so state and offset agree)
//	epoch   the line of state it belongs to (profiles/snapshot.go)
//	node    the node that took it
//
// A node snapshots a partition it holds after SnapshotConfig.Events
// events or SnapshotConfig.Interval, whichever comes first, and when it
// hands the partition over (after its applier stopped, before its lease is
// given up, so the next owner restores the state the handing node ended
// with). The node that claims a partition restores the snapshot into its
// file unless its file is of the snapshot's epoch and as far along
// (keepOwn), then applies after the offset its file holds.

// Snapshotter is an Applier whose partitions' state can be copied out and
// put back: profiles.PartitionFiles. A Node whose Applier is one keeps
// snapshots; one with a plain profiles.Store does not.
type Snapshotter interface {
	Applier
	// Snapshot writes a consistent copy of partition p's state to w and
	// returns the state of p in that copy.
	Snapshot(p int, w io.Writer) (profiles.PartitionState, error)
	// State reads where partition p's state stands on this node while p is
	// not applied here (zero when there is none).
	State(p int) (profiles.PartitionState, error)
	// Restore replaces partition p's state on this node with the copy
	// read from r (or leaves it as it was on an error).
	Restore(p int, r io.Reader) (profiles.PartitionState, error)
}

// SnapshotConfig says when a node snapshots the partitions it holds, if
// its Applier is a Snapshotter; zero fields take the defaults.
type SnapshotConfig struct {
	// Events is how many events of a partition the node applies before
	// it snapshots the partition again (default 50,000).
	Events int
	// Interval is how long at most between two snapshots of a partition
	// that applied events meanwhile (default 5 minutes).
	Interval time.Duration
	// Timeout bounds one upload or download (default 10 minutes).
	Timeout time.Duration
	// Dir is where a snapshot is written before its upload (default the
	// system's temporary folder).
	Dir string
}

func (c SnapshotConfig) withDefaults() SnapshotConfig {
	if c.Events == 0 {
		c.Events = 50_000
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
	return c
}

func (c SnapshotConfig) validate() error {
	switch {
	case c.Events < 0:
		return fmt.Errorf("cluster.snapshot_events: %d is negative", c.Events)
	case c.Interval < 0:
		return fmt.Errorf("cluster.snapshot_interval: %s is negative", c.Interval)
	case c.Timeout < 0:
		return fmt.Errorf("cluster.snapshot_timeout: %s is negative", c.Timeout)
	}
	return nil
}

func snapshotName(p int) string { return fmt.Sprintf("p%04d", p) }

// snapshotChunk is the size of a snapshot's chunks in the Object Store.
// nats.go's Put keeps up to 4,000 chunks unacknowledged, and nats-server
// refuses a stream's messages (429) once 128 MiB wait in its inbound
// queue: with the default 128 KiB chunks a snapshot over 128 MiB could be
// refused part way (seen with 1.5 GB at 1 M profiles, docs/cluster.md).
// 16 KiB chunks keep at most 62.5 MiB in flight.
const snapshotChunk = 16 << 10

// openSnapshots opens the snapshot bucket, creating it if it is missing.
func (l *Log) openSnapshots(ctx context.Context) (jetstream.ObjectStore, error) {
	return untilAnswered(ctx, l.openSnapshotsOnce)
}

func (l *Log) openSnapshotsOnce(ctx context.Context) (jetstream.ObjectStore, error) {
	bucket := l.cfg.Stream + "_SNAPSHOTS"
	obs, err := l.js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = l.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: bucket, Description: "Cartera cluster: the newest snapshot of each partition's state",
			Storage: jetstream.FileStorage, Replicas: l.cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obs, err = l.js.ObjectStore(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", bucket, err)
	}
	return obs, nil
}

// snapshotMeta reads the offset and epoch of a snapshot object.
func snapshotMeta(info *jetstream.ObjectInfo) (profiles.PartitionState, error) {
	off, err := strconv.ParseUint(info.Metadata["offset"], 10, 64)
	if err != nil {
		return profiles.PartitionState{}, fmt.Errorf("snapshot %s: offset %q is not an offset", info.Name, info.Metadata["offset"])
	}
	return profiles.PartitionState{Offset: off, Epoch: info.Metadata["epoch"], Bytes: int64(info.Size)}, nil
}

// restore puts the newest snapshot of the lease's partition in place on
// this node unless the node's own state is of the same epoch and as far
// along, and returns the offset the partition's state then holds: the
// applier starts after it.
func (n *Node) restore(ctx context.Context, ls *lease) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.snapCfg.Timeout)
	defer cancel()
	name := snapshotName(ls.p)
	own, err := n.snap.State(ls.p)
	if err != nil {
		return 0, err
	}
	// Three servers electing leaders at start may not answer at once:
	// tried again for a while, not given up until the next claim.
	info, err := untilAnswered(ctx, func(ctx context.Context) (*jetstream.ObjectInfo, error) {
		return n.obs.GetInfo(ctx, name)
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		n.log.Info("cluster: no snapshot of the partition", "partition", ls.p, "offset", own.Offset)
		ls.snapshotAt(0)
		return own.Offset, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the snapshot of partition %d: %w", ls.p, err)
	}
	snap, err := snapshotMeta(info)
	if err != nil {
		return 0, err
	}
	if keepOwn(own, snap) {
		n.log.Info("cluster: partition state kept", "partition", ls.p, "offset", own.Offset, "snapshot_offset", snap.Offset)
		ls.snapshotAt(snap.Offset)
		return own.Offset, nil
	}
	start := time.Now()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(n.download(ctx, info, pw))
	}()
	st, err := n.snap.Restore(ls.p, pr)
	_ = pr.CloseWithError(errors.New("restore ended"))
	<-done
	if err != nil {
		return 0, err
	}
	n.log.Info("cluster: partition restored", "partition", ls.p, "offset", st.Offset, "bytes", st.Bytes,
		"took", time.Since(start), "own_offset", own.Offset)
	ls.snapshotAt(st.Offset)
	n.record(Timing{Partition: ls.p, Step: StepRestore, Offset: st.Offset, Bytes: st.Bytes, Took: time.Since(start)})
	return st.Offset, nil
}

// download writes the chunks of a snapshot object to w and checks their
// size and digest. (The Object Store's own Get cannot be stopped while it
// waits for a chunk, until its deadline: a node leaving, or one whose
// connection is cut, would wait that long.) Its chunks are the messages
// on $O.<bucket>.C.<nuid> of the stream OBJ_<bucket>. A chunk that does not
// come within 10 lease TTLs ends it too: the object was replaced after its
// info was read (its chunks purged), and the claim is tried again.
func (n *Node) download(ctx context.Context, info *jetstream.ObjectInfo, w io.Writer) error {
	fail := func(err error) error {
		return fmt.Errorf("download snapshot %s: %w", info.Name, err)
	}
	cons, err := n.l.js.OrderedConsumer(ctx, "OBJ_"+info.Bucket, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + info.Bucket + ".C." + info.NUID},
	})
	if err != nil {
		return fail(err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fail(err)
	}
	defer it.Stop()
	// Stop wakes a Next that waits.
	defer context.AfterFunc(ctx, it.Stop)()
	wait := 10 * n.cfg.LeaseTTL
	var idle atomic.Bool
	watchdog := time.AfterFunc(wait, func() {
		idle.Store(true)
		it.Stop()
	})
	defer watchdog.Stop()
	h := sha256.New()
	var size uint64
	for range info.Chunks {
		m, err := it.Next()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return fail(ctx.Err())
		case idle.Load():
			return fail(fmt.Errorf("no chunk for %s (%d of %d bytes read): the snapshot was replaced or its chunks are gone", wait, size, info.Size))
		default:
			return fail(err)
		}
		watchdog.Reset(wait)
		size += uint64(len(m.Data()))
		h.Write(m.Data())
		if _, err := w.Write(m.Data()); err != nil {
			return fail(err)
		}
	}
	switch {
	case size != info.Size:
		return fail(fmt.Errorf("%d bytes in its chunks, %d in its info", size, info.Size))
	case jetstream.GetObjectDigestValue(h) != info.Digest:
		return fail(errors.New("its digest does not match its info"))
	}
	return nil
}

// keepOwn says whether a node that claims a partition keeps its own state
// of it rather than restore the snapshot: only when its file is of the
// snapshot's line of state and at least as far along. A file further
// along but of another line (the node held the partition, died, and
// another node restored an older snapshot and went on from there) is
// replaced: the cluster goes on with the line its last owner left.
func keepOwn(own, snap profiles.PartitionState) bool {
	return own.Epoch != "" && own.Epoch == snap.Epoch && own.Offset >= snap.Offset
}

// snapshot writes the lease's partition to a local file and uploads it,
// if its state is further along than the last snapshot and the node still
// holds the lease. One snapshot of a partition at a time.
func (n *Node) snapshot(ctx context.Context, ls *lease) error {
	ls.snapMu.Lock()
	defer ls.snapMu.Unlock()
	ls.mu.Lock()
	lost, last, applied := ls.lost, ls.snapOff, ls.applied
	ls.mu.Unlock()
	if lost {
		return fmt.Errorf("%w: partition %d", profiles.ErrFenced, ls.p)
	}
	if applied <= last {
		return nil
	}
	// Checked before the copy (a node cut off learns it without writing
	// one) and again before the upload.
	if err := ls.Fence(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.snapCfg.Timeout)
	defer cancel()
	start := time.Now()
	f, err := os.CreateTemp(n.snapCfg.Dir, "cartera-snapshot-*")
	if err != nil {
		return fmt.Errorf("snapshot partition %d: %w", ls.p, err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	st, err := n.snap.Snapshot(ls.p, f)
	if err != nil {
		return err
	}
	written := time.Since(start)
	if st.Offset <= last {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("snapshot partition %d: %w", ls.p, err)
	}
	// A node that lost the partition does not replace its new owner's
	// snapshot (an older one would only mean a longer replay, but a
	// lease lost is a reason to stop).
	if err := ls.Fence(); err != nil {
		return err
	}
	up := time.Now()
	_, err = n.obs.Put(ctx, jetstream.ObjectMeta{Name: snapshotName(ls.p), Metadata: map[string]string{
		"offset": strconv.FormatUint(st.Offset, 10), "epoch": st.Epoch, "node": n.cfg.ID,
	}, Opts: &jetstream.ObjectMetaOptions{ChunkSize: snapshotChunk}}, f)
	if err != nil {
		return fmt.Errorf("upload the snapshot of partition %d: %w", ls.p, err)
	}
	ls.snapshotAt(st.Offset)
	n.log.Info("cluster: partition snapshot uploaded", "partition", ls.p, "offset", st.Offset, "bytes", st.Bytes,
		"write", written, "upload", time.Since(up))
	n.record(Timing{Partition: ls.p, Step: StepSnapshotWrite, Offset: st.Offset, Bytes: st.Bytes, Took: written})
	n.record(Timing{Partition: ls.p, Step: StepSnapshotUpload, Offset: st.Offset, Bytes: st.Bytes, Took: time.Since(up)})
	return nil
}

// snapshotAt records the offset of the partition's newest snapshot.
func (ls *lease) snapshotAt(off uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.snapOff, ls.snapTime = max(ls.snapOff, off), time.Now()
	ls.since.Store(0)
}

// snapshotDue says whether the partition is due a snapshot by time;
// ls.mu is held.
func (ls *lease) snapshotDue(every time.Duration) bool {
	return ls.applied > ls.snapOff && time.Since(ls.snapTime) >= every
}

// runSnapshots takes the snapshots that come due, one at a time, until
// ctx ends.
func (n *Node) runSnapshots(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.snapWake:
		}
		n.mu.Lock()
		var due []*lease
		for _, ls := range n.held {
			if !ls.releasing && ls.due.Swap(false) {
				due = append(due, ls)
			}
		}
		n.mu.Unlock()
		for _, ls := range due {
			if err := n.snapshot(ctx, ls); err != nil && ctx.Err() == nil && !errors.Is(err, profiles.ErrFenced) {
				n.log.Warn("cluster: snapshot", "partition", ls.p, "err", err)
			}
		}
	}
}

// wakeSnapshots marks the lease's partition due a snapshot.
func (n *Node) wakeSnapshots(ls *lease) {
	ls.due.Store(true)
	select {
	case n.snapWake <- struct{}{}:
	default:
	}
}

// Step names a part of moving a partition's state, in a Timing.
type Step string

// The steps a Node times.
const (
	StepSnapshotWrite  Step = "snapshot-write"  // copying the partition's file to a local file
	StepSnapshotUpload Step = "snapshot-upload" // uploading that copy to the Object Store
	StepRestore        Step = "restore"         // downloading the newest snapshot into the partition's file
	StepCaughtUp       Step = "caught-up"       // from the start of applying to the end of the stream as it was then
)

// Timing is how long one step of moving a partition took on this node.
type Timing struct {
	Partition int
	Step      Step
	Offset    uint64
	Bytes     int64
	Took      time.Duration
}

// Timings returns the steps this node timed, oldest first (the last 1024).
func (n *Node) Timings() []Timing {
	n.timeMu.Lock()
	defer n.timeMu.Unlock()
	return append([]Timing(nil), n.timings...)
}

func (n *Node) record(t Timing) {
	n.steps.WithLabelValues(string(t.Step)).Observe(t.Took.Seconds())
	n.timeMu.Lock()
	defer n.timeMu.Unlock()
	if len(n.timings) == 1024 {
		n.timings = append(n.timings[:0], n.timings[1:]...)
	}
	n.timings = append(n.timings, t)
}
