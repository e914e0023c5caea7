// Package jetstream is the event log of cluster mode: a NATS JetStream
// stream behind the same profiles.EventLog interface as the local
// eventlog.Log.
//
// One stream (file storage, replicated Replicas times) holds every event.
// Its subjects are <Subject>.<partition>, with a fixed number of partitions
// chosen when the stream is created and kept in the stream's metadata; an
// event's partition is a hash of its userId, or of its anonymousId when it
// has none. The offset of a record is its stream sequence, so offsets are
// consecutive over the whole stream, whatever the partition.
//
// Append publishes asynchronously and returns only once JetStream has
// acknowledged every record (for a replicated stream, once a quorum of the
// replicas has stored it); a record not acknowledged within AckWait makes
// Append fail, and nothing is reported as durable that was not
// acknowledged. Read follows the stream with an ordered consumer from an
// offset and blocks until a record is there or its context ends.
//
// What this package does not do yet: partition ownership (every node reads
// every partition; one node is expected), and identity across partitions:
// an anonymous visitor's events land in the partition of their
// anonymousId, and once identified, in the partition of their userId. A
// single reader of the whole stream applies them in stream order, so
// nothing is lost or reordered today; with partitions owned by different
// nodes, merging those two histories is the open problem (issue 15).
//
//	l, err := jetstream.Open(ctx, jetstream.Config{URL: "nats://127.0.0.1:4222", Stream: "CARTERA_EVENTS", Subject: "cartera.events", Partitions: 64, Replicas: 3})
//	first, last, err := l.Append(ctx, records)
//	recs, err := l.Read(ctx, first, 100)
package jetstream
