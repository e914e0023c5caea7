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
// of its userId, or of its anonymousId when it has none. The offset of a
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
// owner's late checkpoint fails. A new owner starts after the checkpoint.
//
// What this package does not do: move a partition's state. A node keeps
// what it applied in its bbolt file (one for all its partitions, a
// profiles.Store, or one per partition, profiles.PartitionFiles); a
// partition that moves starts on its new owner from the checkpoint, with
// the person's earlier state (and the messageIds that dedupe retries) left
// in the former owner's file. A
// node that dies between a commit and its checkpoint has that commit
// applied again by the next owner. Identity across partitions is not
// resolved: an anonymous visitor's events land in the partition of their
// anonymousId, and once identified, in the partition of their userId.
//
//	l, err := jetstream.Open(ctx, jetstream.Config{URL: "nats://127.0.0.1:4222", Stream: "CARTERA_EVENTS", Subject: "cartera.events", Partitions: 64, Replicas: 3, AckWait: 5 * time.Second})
//	n, err := jetstream.StartNode(ctx, l, store, jetstream.NodeConfig{ID: "node-1", LeaseTTL: 10 * time.Second})
//	defer n.Close()
package jetstream
