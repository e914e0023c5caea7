// Package jetstream is the event log of cluster mode: a NATS JetStream
// stream behind the same profiles.EventLog interface as the local
// eventlog.Log, and the partition ownership that lets several nodes share
// it (Node).
//
// One stream (file storage, replicated Replicas times) holds every event.
// Its subjects are <Subject>.<partition>, with a fixed number of partitions
// recorded when the cluster is created, in the KV bucket <Stream>_META
// (key "partitions") and in the stream's metadata: a node configured with
// another count refuses to start. An event's partition is a hash (FNV-1a)
// of its userId, or of its anonymousId when it has none (or of the profile
// id a routed record is addressed to, below). The offset of a
// record is its stream sequence, so offsets are consecutive over the whole
// stream and ascending, with gaps, within a partition.
//
// Append publishes asynchronously and returns only once JetStream has
// acknowledged every record (for a replicated stream, once a quorum of the
// replicas has stored it). Read follows the whole stream with an ordered
// consumer (one node applying everything); a Node reads each partition it
// holds with an ordered consumer filtered to its subject.
//
// Ownership (node.go): each node heartbeats in the KV bucket
// <Stream>_LEASES, whose keys lapse after the lease TTL, and claims the
// partitions that rendezvous hashing with even shares gives it with a
// compare-and-set create of lease.<p>, renewed with the revision it wrote
// last. That revision is the fencing token: before each commit of a
// partition's state the node checks, inside the write transaction, that
// its lease has not lapsed by its own clock (with a margin) and that the
// bucket still holds its revision; a lease found lost stops the
// partition's applier at once. After each commit the offset applied is
// checkpointed in <Stream>_META (applied.<p>) with compare-and-set on the
// revision the node took over when it claimed the partition, so a former
// owner's late checkpoint fails. Without snapshots (below), a new owner
// starts after the checkpoint, or after what its own file holds of the
// partition if that is further.
//
// State moves with a partition when the node's Applier is a Snapshotter
// (profiles.PartitionFiles, one bbolt file per partition; snapshot.go): a
// node snapshots each partition it holds to the Object Store bucket
// <Stream>_SNAPSHOTS every SnapshotConfig.Events events or Interval,
// whichever first, and when it hands the partition over; the node that
// claims it restores the newest snapshot into its file (or keeps its own
// file if that is of the same line of state and as far along) and
// applies the stream after the offset stored in that file, whatever the
// checkpoint says. A snapshot is bbolt's consistent copy of the file in
// one read transaction, so its offset is the one committed with its
// state. With a plain profiles.Store as the Applier (one file for all of a
// node's partitions) nothing is snapshotted and a new owner starts after
// the checkpoint, with the person's earlier state left behind.
//
// What holds, with snapshots:
//
//   - Every acknowledged event of a partition is in its owner's state
//     exactly once, through clean hand-overs, a node killed at any point,
//     and a lease lost: the state and the offset it covers are committed
//     together, snapshots and restores carry both, and a new owner
//     applies only what comes after that offset. The messageIds that
//     make a retry a no-op move with the state. (The fence is a check
//     just before the commit, not a condition the disk enforces: this
//     holds as long as a commit ends within the lease's margin, TTL/4.)
//   - A clean hand-over (leave, join, rebalancing) replays nothing: the
//     snapshot is taken after the last commit, before the lease is given
//     up.
//   - After a node dies (or loses a lease it could not renew), the events
//     it applied after the partition's last snapshot are applied again on
//     the new owner: once in the state that goes on, but the processors
//     (rules, journeys) see them a second time, so a send they triggered
//     on the dead node can be made again. The snapshot period bounds how
//     many. So do the profile ids of people the dead node created after
//     that snapshot: the new owner gives them new ones.
//   - Replay needs the stream to hold every record after the snapshot:
//     a node trims each partition it holds below its newest snapshot, as
//     its retention lets it (trim.go); a stream purged past a partition's newest
//     snapshot loses those records for that partition (a warning is
//     logged at claim time, the reader cannot tell them apart).
//
// Identity across partitions (router.go): a Router resolves each event's
// identifiers in the KV bucket <Stream>_IDENTITY (identifier → profile id,
// written with compare-and-set) before appending it addressed to that
// profile, so that partitions are keyed by profile: a visitor's anonymous
// and signed-in events land in one partition. An event whose identifiers
// lead to two profiles merges them through the log: the index forwards the
// newer profile to the older, a MergeOut record asks the newer one's
// partition to send its state to the older one's partition as a MergeIn
// record, and records still addressed to the newer one are forwarded there
// (profiles/crossmerge.go). Router.Seed fills the index from a store that
// already holds people, before the router takes events (seed.go). Appends
// that do not go through a Router are partitioned by userId, else
// anonymousId, as before; a cluster must use one or the other. What holds and what does not: docs/cluster.md,
// "Identity across partitions".
//
//	l, err := jetstream.Open(ctx, jetstream.Config{URL: "nats://127.0.0.1:4222", Stream: "CARTERA_EVENTS", Subject: "cartera.events", Partitions: 64, Replicas: 3, AckWait: 5 * time.Second})
//	files := profiles.NewPartitionFiles(dir, openStore)
//	n, err := jetstream.StartNode(ctx, l, files, jetstream.NodeConfig{ID: "node-1", LeaseTTL: 10 * time.Second,
//		Snapshots: jetstream.SnapshotConfig{Events: 50_000, Interval: 5 * time.Minute}})
//	defer n.Close()
//	r, err := jetstream.NewRouter(ctx, l, jetstream.RouterConfig{Identity: idcfg, CacheTTL: 2 * time.Second})
//	_, last, err := r.Append(ctx, records) // each addressed to its profile
package jetstream
