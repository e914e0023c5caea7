package jetstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/profiles"
)

// The lease bucket <Stream>_LEASES (TTL = NodeConfig.LeaseTTL, one
// revision a key): a key not written again within the TTL disappears.
//
//	node.<id>    a live node's heartbeat, written every LeaseTTL/3
//	lease.<p>    the id of the node that holds partition p; created with
//	             Create (only if absent), renewed and given up with the
//	             revision the holder last wrote (compare-and-set). That
//	             revision is the fencing token.
//
// Assignment is rendezvous hashing with even shares: every node computes,
// from the same live heartbeats, the same table. Partition by partition in
// order, each goes to the node that ranks it highest (FNV-1a of
// "<node id>/<partition>") among those still under their share: with P
// partitions and n nodes, P mod n nodes take ⌈P/n⌉ and the others ⌊P/n⌋.
// A node gives up the partitions that are no longer its own and claims
// those that are, once their lease is free (given
// up, or lapsed with a dead node). A join or a leave moves mostly the
// partitions that rank the new node first or belonged to the one that left
// (the even shares move a few more); TestAssignMovesFew counts them.

// Applier applies a partition this node holds until it returns:
// profiles.Store.ApplyPartition.
type Applier interface {
	ApplyPartition(ctx context.Context, p int, from uint64, log profiles.PartitionLog) error
}

// NodeConfig names a node and sets its leases.
type NodeConfig struct {
	// ID names the node in the cluster: unique, stable across its
	// restarts, letters, digits, '-' and '_'.
	ID string
	// LeaseTTL is how long a lease lasts without renewal, so how long a
	// dead node's partitions wait for a new owner. The lease bucket is
	// created with it; every node must use the same.
	LeaseTTL time.Duration
	// Logger receives ownership changes; discarded when nil.
	Logger *slog.Logger
	// Snapshots says when the node snapshots its partitions' state, if
	// its Applier is a Snapshotter (snapshot.go).
	Snapshots SnapshotConfig
	// Trim says how the node trims its partitions' records below their
	// snapshots from the stream, if its Applier is a Snapshotter
	// (trim.go); the zero value never trims.
	Trim TrimConfig
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate says which field is wrong.
func (c NodeConfig) Validate() error {
	switch {
	case !nodeIDPattern.MatchString(c.ID):
		return fmt.Errorf("cluster.node: %q is not a node id (1 to 64 letters, digits, '-' or '_')", c.ID)
	case c.LeaseTTL < 100*time.Millisecond:
		return fmt.Errorf("cluster.lease_ttl: %s is under 100ms", c.LeaseTTL)
	}
	if err := c.Trim.validate(); err != nil {
		return err
	}
	return c.Snapshots.validate()
}

// Node holds leases on partitions of the cluster and runs the applier of
// each partition it holds, on the Log's connection. A lost lease stops
// its partition's applier at once: its reader ends and the commit in
// flight fails its fence.
type Node struct {
	l      *Log
	cfg    NodeConfig
	log    *slog.Logger
	app    Applier
	leases jetstream.KeyValue

	mu   sync.Mutex
	held map[int]*lease

	// snap and obs are set when the Applier is a Snapshotter: the
	// partitions' state moves with them through the Object Store.
	snap     Snapshotter
	obs      jetstream.ObjectStore
	snapCfg  SnapshotConfig
	snapWake chan struct{}

	timeMu  sync.Mutex
	timings []Timing

	// ages are the lags' ages the last Lags found, by partition.
	ages atomic.Pointer[map[int]time.Duration]

	// claimed, released and lost count partitions claimed, handed over
	// and lost (the lease lapsed or was taken); steps times the steps of
	// moving partitions (Timing), by step.
	claimed, released, lost atomic.Int64
	steps                   *prometheus.HistogramVec

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // hand-overs and the snapshot taker
}

// lease is a partition this node holds, and its applier.
type lease struct {
	n      *Node
	p      int
	reader *partReader
	cancel context.CancelFunc // ends the applier (after its commit in flight)
	done   chan struct{}      // closed when the applier returned

	mu       sync.Mutex
	rev      uint64    // the revision of lease.<p> this node wrote last: the fencing token
	deadline time.Time // when the lease lapses at the latest, by this node's clock
	lost     bool
	ckRev    uint64 // the revision of applied.<p> this node wrote last
	ckDone   uint64 // the offset checkpointed
	ckWant   uint64 // the offset applied (checkpointed when the store commits it)
	applied  uint64 // the offset the partition's state holds on this node
	snapOff  uint64 // the offset of the partition's newest snapshot
	snapTime time.Time
	trimmed  uint64 // the offset below which this node trimmed the partition's records
	// catchUp is the partition's last offset in the stream when its
	// applier started (0 once reached), started when.
	catchUp uint64
	started time.Time
	// head is the partition's last offset in the stream when its applier
	// started (Head); set before the applier starts.
	head uint64

	releasing bool // being handed over (n.mu)

	snapMu sync.Mutex   // one snapshot at a time
	since  atomic.Int64 // events read since the last snapshot
	due    atomic.Bool  // a snapshot is due
}

// StartNode joins the cluster of l as cfg.ID: it heartbeats, claims the
// partitions the assignment gives it, and runs app on each until Close.
func StartNode(ctx context.Context, l *Log, app Applier, cfg NodeConfig) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	bucket := l.cfg.Stream + "_LEASES"
	kv, err := openBucket(ctx, l.js, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "Cartera cluster: node heartbeats and partition leases",
		History: 1, TTL: cfg.LeaseTTL, Storage: jetstream.MemoryStorage, Replicas: l.cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", bucket, err)
	}
	if st.TTL() != cfg.LeaseTTL {
		return nil, fmt.Errorf("cluster.lease_ttl: the cluster's leases last %s (kv bucket %s) and this node's config says %s; every node must use the same", st.TTL(), bucket, cfg.LeaseTTL)
	}
	n := &Node{l: l, cfg: cfg, log: lg, app: app, leases: kv, held: map[int]*lease{},
		snapCfg: cfg.Snapshots.withDefaults(), snapWake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cartera_cluster_partition_step_seconds",
			Help:    "Time the steps of moving a partition took on this node: snapshot, snapshot-upload, restore, caught-up (from the start of applying to the stream's end as it was then).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"step"})}
	if snap, ok := app.(Snapshotter); ok {
		if d := n.snapCfg.Dir; d != "" {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("snapshots folder: %w", err)
			}
		}
		if n.obs, err = l.openSnapshots(ctx); err != nil {
			return nil, err
		}
		n.snap = snap
		sctx, cancel := context.WithCancel(context.Background())
		n.wg.Go(func() { n.runSnapshots(sctx) })
		if cfg.Trim.Every > 0 {
			n.wg.Go(func() { n.runTrims(sctx) })
		}
		n.wg.Go(func() {
			<-n.stop
			cancel()
		})
	}
	go n.run()
	return n, nil
}

// Held returns the partitions this node holds now, in order.
func (n *Node) Held() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []int
	for p, ls := range n.held {
		ls.mu.Lock()
		if !ls.lost {
			out = append(out, p)
		}
		ls.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// Lag is how far a partition's applier is behind the stream.
type Lag struct {
	// Events is how many records of the partition its applier has not
	// read yet (as of the last record its reader received).
	Events uint64
	// Age is how long ago JetStream stored the oldest of them, at the
	// time Lags was given (0 when none is behind).
	Age time.Duration
}

// Lags says how far behind each partition this node holds is. The age of
// a partition that is behind costs a read of its oldest record not read
// (a direct get of one message); one whose read fails has no age.
func (n *Node) Lags(ctx context.Context, now time.Time) map[int]Lag {
	type behind struct {
		p      int
		r      *partReader
		events uint64
	}
	var aged []behind
	out := map[int]Lag{}
	for p, events := range n.lagEvents() {
		out[p] = Lag{Events: events}
		if events > 0 {
			n.mu.Lock()
			if ls := n.held[p]; ls != nil {
				aged = append(aged, behind{p, ls.reader, events})
			}
			n.mu.Unlock()
		}
	}
	for _, b := range aged {
		if at, err := b.r.nextStored(ctx); err == nil && !at.IsZero() {
			out[b.p] = Lag{Events: b.events, Age: max(now.Sub(at), 0)}
		}
	}
	ages := make(map[int]time.Duration, len(out))
	for p, l := range out {
		ages[p] = l.Age
	}
	n.ages.Store(&ages)
	return out
}

// lastAges are the lags' ages the last Lags found (a scrape of the
// metrics reads no record for them).
func (n *Node) lastAges() map[int]time.Duration {
	if m := n.ages.Load(); m != nil {
		return *m
	}
	return nil
}

// lagEvents is how many records of each partition this node holds its
// applier has not read yet.
func (n *Node) lagEvents() map[int]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[int]uint64, len(n.held))
	for p, ls := range n.held {
		ls.mu.Lock()
		if !ls.lost {
			out[p] = ls.reader.prog.behind()
		}
		ls.mu.Unlock()
	}
	return out
}

// Close leaves the cluster: each partition's applier finishes its commit,
// its state is snapshotted (with a Snapshotter), its checkpoint written
// and its lease given up, so that another node takes it at once; then the
// heartbeat is removed. (A node that dies instead leaves its leases to
// lapse.)
func (n *Node) Close() error {
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.done
	return nil
}

func (n *Node) run() {
	defer close(n.done)
	every := n.cfg.LeaseTTL / 3
	for {
		n.tick()
		select {
		case <-n.stop:
			n.leave()
			return
		case <-time.After(every):
		}
	}
}

// kvCtx bounds one KV operation.
func (n *Node) kvCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), max(n.cfg.LeaseTTL/3, time.Second))
}

// tick heartbeats, renews what the node holds, gives up what is no
// longer its own and claims what is and is free.
func (n *Node) tick() {
	ctx, cancel := n.kvCtx()
	defer cancel()
	if _, err := n.leases.Put(ctx, "node."+n.cfg.ID, []byte(n.cfg.ID)); err != nil {
		n.log.Warn("cluster: heartbeat", "err", err)
	}
	n.mu.Lock()
	held := make(map[int]*lease, len(n.held))
	var ended []*lease
	for p, ls := range n.held {
		if ls.releasing {
			// Renewed until its hand-over gives it up.
			held[p] = ls
			continue
		}
		select {
		case <-ls.done:
			// The applier returned (lease lost, or a failure): give it
			// up; it is claimed again below if it is still ours.
			ended = append(ended, ls)
			delete(n.held, p)
			continue
		default:
		}
		held[p] = ls
	}
	n.mu.Unlock()
	for _, ls := range ended {
		n.giveUp(ls)
	}
	for _, ls := range held {
		ls.renew()
		if n.snap != nil {
			ls.mu.Lock()
			due := ls.snapshotDue(n.snapCfg.Interval)
			ls.mu.Unlock()
			if due {
				n.wakeSnapshots(ls)
			}
		}
	}
	members, err := n.members(ctx)
	if err != nil {
		n.log.Warn("cluster: list nodes", "err", err)
		return
	}
	mine := assign(members, n.l.cfg.Partitions, n.cfg.ID)
	for p, ls := range held {
		n.mu.Lock()
		handOver := !mine[p] && !ls.releasing
		if handOver {
			ls.releasing = true
		}
		n.mu.Unlock()
		if handOver {
			// Apart from the ticks: a snapshot's upload can outlast a
			// renewal period.
			n.wg.Go(func() { n.release(ls) })
		}
	}
	for p := range n.l.cfg.Partitions {
		if mine[p] && held[p] == nil {
			n.claim(p)
		}
	}
}

// members lists the nodes whose heartbeat is live, sorted.
func (n *Node) members(ctx context.Context) ([]string, error) {
	kl, err := n.leases.ListKeysFiltered(ctx, "node.*")
	if err != nil {
		return nil, err
	}
	defer func() { _ = kl.Stop() }()
	var ids []string
	for k := range kl.Keys() {
		ids = append(ids, strings.TrimPrefix(k, "node."))
	}
	if !slices.Contains(ids, n.cfg.ID) {
		// Our heartbeat failed: claim nothing on a table without us.
		return nil, errors.New("this node's heartbeat is not in the lease bucket")
	}
	slices.Sort(ids)
	return ids, nil
}

// assign returns the partitions node id owns among members (sorted).
func assign(members []string, partitions int, id string) map[int]bool {
	out := map[int]bool{}
	for p, owner := range owners(members, partitions) {
		if owner == id {
			out[p] = true
		}
	}
	return out
}

// owners returns the owner of each partition: rendezvous hashing, with the
// shares kept even (see the top of this file).
func owners(members []string, partitions int) []string {
	out := make([]string, partitions)
	if len(members) == 0 {
		return out
	}
	lo, extra := partitions/len(members), partitions%len(members)
	count := make(map[string]int, len(members))
	full := 0 // nodes that took lo+1
	ranked := slices.Clone(members)
	for p := range partitions {
		weight := func(m string) uint32 {
			h := fnv.New32a()
			_, _ = h.Write([]byte(m + "/" + strconv.Itoa(p)))
			return h.Sum32()
		}
		slices.SortFunc(ranked, func(a, b string) int {
			if wa, wb := weight(a), weight(b); wa != wb {
				return cmp.Compare(wb, wa)
			}
			return strings.Compare(a, b)
		})
		for _, m := range ranked {
			if c := count[m]; c < lo || (c == lo && full < extra) {
				if c == lo {
					full++
				}
				count[m]++
				out[p] = m
				break
			}
		}
	}
	return out
}

// claim takes partition p if its lease is free, takes over its checkpoint
// (so that a previous owner's later checkpoints fail) and starts its
// applier after it.
func (n *Node) claim(p int) {
	ctx, cancel := n.kvCtx()
	defer cancel()
	sent := time.Now()
	rev, err := n.leases.Create(ctx, "lease."+strconv.Itoa(p), []byte(n.cfg.ID))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return // held by another node (leaving, or dead and not lapsed yet)
	}
	if err != nil {
		n.log.Warn("cluster: claim partition", "partition", p, "err", err)
		return
	}
	ls := &lease{n: n, p: p, rev: rev, deadline: sent.Add(n.cfg.LeaseTTL), done: make(chan struct{}), reader: n.l.newPartReader(p)}
	from, err := ls.takeCheckpoint(ctx)
	if err != nil {
		n.log.Warn("cluster: take over the checkpoint", "partition", p, "err", err)
		ls.mu.Lock()
		n.deleteLease(ls)
		ls.mu.Unlock()
		return
	}
	n.mu.Lock()
	n.held[p] = ls
	n.mu.Unlock()
	n.claimed.Add(1)
	n.log.Info("cluster: partition claimed", "partition", p, "checkpoint", from)
	actx, acancel := context.WithCancel(context.Background())
	ls.cancel = acancel
	go func() {
		defer close(ls.done)
		defer acancel()
		if n.snap != nil {
			// The partition's state comes from its newest snapshot (or
			// this node's file), and applying goes on after the offset
			// stored in it, whatever the checkpoint says.
			at, err := n.restore(actx, ls)
			if err != nil {
				n.log.Error("cluster: restore partition", "partition", p, "err", err)
				return
			}
			from = at
		}
		ls.startApplying(from)
		err := n.app.ApplyPartition(actx, p, from+1, ls)
		if errors.Is(err, profiles.ErrFenced) || errors.Is(err, context.Canceled) {
			n.log.Info("cluster: partition applier stopped", "partition", p, "reason", err.Error())
		} else {
			n.log.Error("cluster: partition applier stopped", "partition", p, "err", err)
		}
	}()
}

// takeCheckpoint reads applied.<p> and writes it back unchanged: the new
// revision is this node's checkpoint token.
func (ls *lease) takeCheckpoint(ctx context.Context) (uint64, error) {
	kv, key := ls.n.l.meta, checkpointKey(ls.p)
	for range 5 {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rev, err := kv.Create(ctx, key, []byte("0"))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return 0, err
			}
			ls.ckRev = rev
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		off, err := strconv.ParseUint(string(e.Value()), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("checkpoint %s is %q, not an offset", key, e.Value())
		}
		rev, err := kv.Update(ctx, key, e.Value(), e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // the previous owner checkpointed meanwhile
		}
		if err != nil {
			return 0, err
		}
		ls.ckRev, ls.ckDone, ls.ckWant = rev, off, off
		return off, nil
	}
	return 0, errors.New("the checkpoint keeps changing")
}

// margin is how long before the lease lapses this node stops committing:
// a commit and its checkpoint must end within it.
func (ls *lease) margin() time.Duration { return ls.n.cfg.LeaseTTL / 4 }

// lose marks the lease lost and stops the applier's reads; ls.mu is held.
func (ls *lease) lose(why string) error {
	if !ls.lost {
		ls.lost = true
		ls.n.lost.Add(1)
		ls.n.log.Warn("cluster: partition lease lost", "partition", ls.p, "reason", why)
	}
	err := fmt.Errorf("%w: partition %d: %s", profiles.ErrFenced, ls.p, why)
	ls.reader.halt(err)
	if ls.cancel != nil {
		ls.cancel()
	}
	return err
}

// startApplying notes where the applier starts and where the partition
// ends in the stream now (to time the catching up).
func (ls *lease) startApplying(from uint64) {
	cctx, cancel := ls.n.kvCtx()
	defer cancel()
	last, err := ls.n.l.PartitionHead(cctx, ls.p)
	if err != nil {
		ls.n.log.Warn("cluster: read where the partition ends in the stream; its core's work starts without waiting for the applier to catch up",
			"partition", ls.p, "err", err)
	}
	if info, err := ls.n.l.stream.Info(cctx); err == nil && info.State.Msgs > 0 && info.State.FirstSeq > from+1 {
		// The partition reader skips the offsets the stream no longer
		// holds (it cannot tell them from other partitions' records).
		ls.n.log.Warn("cluster: the stream no longer holds records after the partition's state; any of this partition among them are not applied",
			"partition", ls.p, "state_offset", from, "stream_first", info.State.FirstSeq)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.applied, ls.started, ls.head = from, time.Now(), last
	if last > from {
		ls.catchUp = last
	}
}

// Head is where the partition ended in the stream when its applier
// started (profiles.PartitionHead): its core's own work waits until the
// applier has caught up with it.
func (ls *lease) Head() uint64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.head
}

// Read reads the partition (profiles.PartitionLog).
func (ls *lease) Read(ctx context.Context, from uint64, max int) ([]profiles.Record, error) {
	recs, err := ls.reader.Read(ctx, from, max)
	ls.since.Add(int64(len(recs)))
	return recs, err
}

// Forward appends records addressed to other profiles (routed records:
// an event for a profile merged away from this partition, a merge's
// state), wherever their partitions are (profiles.Forwarder).
func (ls *lease) Forward(ctx context.Context, recs [][]byte) error {
	_, _, err := ls.n.l.Append(ctx, recs)
	return err
}

// AppendRecords appends records of the partition's store to the stream
// (profiles.PartitionAppender: IngestFor on a node).
func (ls *lease) AppendRecords(ctx context.Context, recs [][]byte) (uint64, error) {
	for _, rec := range recs {
		if q := ls.n.l.Partition(rec); q != ls.p {
			return 0, fmt.Errorf("%w: a record of partition %d, not %d", profiles.ErrOtherPartition, q, ls.p)
		}
	}
	_, last, err := ls.n.l.Append(ctx, recs)
	return last, err
}

// MaxRecord is the largest record the server takes (profiles.Forwarder).
func (ls *lease) MaxRecord() int { return ls.n.l.MaxRecord() }

// Fence checks, before a commit of the partition's records, that this
// node still holds the lease: by its own clock with a margin, then in the
// lease bucket (the revision it wrote last is still the latest).
func (ls *lease) Fence() error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.lost {
		return fmt.Errorf("%w: partition %d", profiles.ErrFenced, ls.p)
	}
	if time.Until(ls.deadline) < ls.margin() {
		return ls.lose("the lease was not renewed in time")
	}
	ctx, cancel := ls.n.kvCtx()
	defer cancel()
	e, err := ls.n.leases.Get(ctx, "lease."+strconv.Itoa(ls.p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return ls.lose("the lease lapsed")
	case err != nil:
		return fmt.Errorf("read the lease of partition %d: %w", ls.p, err)
	case e.Revision() != ls.rev || string(e.Value()) != ls.n.cfg.ID:
		return ls.lose("node " + string(e.Value()) + " holds the lease now")
	}
	return nil
}

// Checkpoint records, with the checkpoint token, the offset the partition
// is applied through (profiles.PartitionLog).
func (ls *lease) Checkpoint(through uint64) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.ckWant = max(ls.ckWant, through)
	ls.applied = max(ls.applied, through)
	if ls.catchUp > 0 && through >= ls.catchUp {
		ls.catchUp = 0
		ls.n.record(Timing{Partition: ls.p, Step: StepCaughtUp, Offset: through, Took: time.Since(ls.started)})
	}
	if ls.n.snap != nil && ls.since.Load() >= int64(ls.n.snapCfg.Events) {
		ls.n.wakeSnapshots(ls)
	}
	return ls.flushCheckpoint()
}

// flushCheckpoint writes ckWant if it is ahead; ls.mu is held. A write
// that fails for the network is tried again at the next renewal.
func (ls *lease) flushCheckpoint() error {
	if ls.lost {
		return fmt.Errorf("%w: partition %d", profiles.ErrFenced, ls.p)
	}
	if ls.ckWant <= ls.ckDone {
		return nil
	}
	ctx, cancel := ls.n.kvCtx()
	defer cancel()
	rev, err := ls.n.l.meta.Update(ctx, checkpointKey(ls.p), []byte(strconv.FormatUint(ls.ckWant, 10)), ls.ckRev)
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return ls.lose("another node took over the checkpoint")
	case err != nil:
		return fmt.Errorf("checkpoint partition %d: %w", ls.p, err)
	}
	ls.ckRev, ls.ckDone = rev, ls.ckWant
	return nil
}

// renew writes the lease again with the revision this node wrote last.
func (ls *lease) renew() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.lost {
		return
	}
	_ = ls.flushCheckpoint()
	ctx, cancel := ls.n.kvCtx()
	defer cancel()
	sent := time.Now()
	rev, err := ls.n.leases.Update(ctx, "lease."+strconv.Itoa(ls.p), []byte(ls.n.cfg.ID), ls.rev)
	switch {
	case err == nil:
		ls.rev, ls.deadline = rev, sent.Add(ls.n.cfg.LeaseTTL)
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
		_ = ls.lose("the lease lapsed or was taken")
	default:
		if time.Until(ls.deadline) < ls.margin() {
			_ = ls.lose("the lease could not be renewed: " + err.Error())
		}
	}
}

// release gives partition p up to the node it is assigned to now: its
// applier ends after the commit in flight, its state is snapshotted (with
// a Snapshotter), the checkpoint is written, and the lease deleted
// (compare-and-set) for the new owner to claim.
func (n *Node) release(ls *lease) {
	ls.reader.halt(fmt.Errorf("%w: partition %d given up", profiles.ErrFenced, ls.p))
	ls.cancel()
	<-ls.done
	if n.snap != nil {
		err := retry(handOverTries, time.Sleep, func() error { return n.snapshot(context.Background(), ls) }, func(err error, try int) {
			n.log.Warn("cluster: snapshot at hand-over failed, trying again", "partition", ls.p, "try", try, "err", err)
		})
		if err != nil {
			// The next owner restores the snapshot before and replays.
			n.log.Warn("cluster: snapshot at hand-over", "partition", ls.p, "err", err)
		}
	}
	n.giveUp(ls)
	n.mu.Lock()
	delete(n.held, ls.p)
	n.mu.Unlock()
	n.released.Add(1)
	n.log.Info("cluster: partition released", "partition", ls.p)
}

// handOverTries is how often a hand-over's snapshot is tried (an upload
// the server refuses for a moment, 429, is worth another try: without it
// the next owner replays from the last periodic snapshot).
const handOverTries = 3

// retry calls do up to tries times, pausing one second more after each
// failure, and returns its last error; a fenced partition is not tried
// again (the lease is gone). failed hears of each failure but the last.
func retry(tries int, pause func(time.Duration), do func() error, failed func(err error, try int)) error {
	for try := 1; ; try++ {
		err := do()
		if err == nil || try >= tries || errors.Is(err, profiles.ErrFenced) {
			return err
		}
		failed(err, try)
		pause(time.Duration(try) * time.Second)
	}
}

// giveUp checkpoints and deletes the lease of a partition whose applier
// has returned.
func (n *Node) giveUp(ls *lease) {
	ls.reader.close()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.lost {
		return
	}
	if err := ls.flushCheckpoint(); err != nil {
		// The lease lapses by itself; the next owner starts from the
		// last checkpoint written.
		n.log.Warn("cluster: final checkpoint", "partition", ls.p, "err", err)
		return
	}
	n.deleteLease(ls)
	ls.lost = true
}

// deleteLease deletes lease.<p> if this node wrote it last; ls.mu is held.
func (n *Node) deleteLease(ls *lease) {
	ctx, cancel := n.kvCtx()
	defer cancel()
	if err := n.leases.Delete(ctx, "lease."+strconv.Itoa(ls.p), jetstream.LastRevision(ls.rev)); err != nil {
		n.log.Warn("cluster: give up lease", "partition", ls.p, "err", err)
	}
}

// leave releases every partition (those being handed over already end
// their hand-over) and removes the heartbeat.
func (n *Node) leave() {
	n.mu.Lock()
	for _, ls := range n.held {
		if !ls.releasing {
			ls.releasing = true
			n.wg.Go(func() { n.release(ls) })
		}
	}
	n.mu.Unlock()
	// The leases are renewed until they are given up: a hand-over's
	// snapshot upload can outlast the lease.
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.wg.Wait()
	}()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(n.cfg.LeaseTTL / 3):
			n.mu.Lock()
			held := make([]*lease, 0, len(n.held))
			for _, ls := range n.held {
				held = append(held, ls)
			}
			n.mu.Unlock()
			for _, ls := range held {
				ls.renew()
			}
		}
	}
	ctx, cancel := n.kvCtx()
	defer cancel()
	_ = n.leases.Delete(ctx, "node."+n.cfg.ID)
}
