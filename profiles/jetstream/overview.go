package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Overview is the cluster as the node reads it from the streams and
// buckets: which nodes are live, which holds each partition, where each
// partition ends and where its newest snapshot stands.
type Overview struct {
	// Node is this node's id.
	Node string
	// Nodes are the live nodes (a heartbeat within the lease TTL), sorted.
	Nodes []string
	// Stream is the events stream's state: its records and bytes, its
	// first and last offsets.
	Records, Bytes    uint64
	FirstSeq, LastSeq uint64
	Partitions        []PartitionOverview
}

// PartitionOverview is one partition of an Overview.
type PartitionOverview struct {
	Partition int
	// Holder is the node holding its lease ("" while none does).
	Holder string
	// Head is its last offset in the stream (0: no record).
	Head uint64
	// Snapshot is its newest snapshot in the Object Store (zero: none):
	// the offset it covers, when and by which node it was uploaded, and
	// its size.
	SnapshotOffset uint64
	SnapshotAt     time.Time
	SnapshotNode   string
	SnapshotBytes  uint64
}

// Overview reads the cluster's overview: a few KV reads and one read of
// each partition's last record, so a page's worth, not a hot path.
func (n *Node) Overview(ctx context.Context) (*Overview, error) {
	out := &Overview{Node: n.cfg.ID}
	members, err := n.members(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster overview: %w", err)
	}
	out.Nodes = members
	info, err := n.l.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster overview: %w", err)
	}
	out.Records, out.Bytes, out.FirstSeq, out.LastSeq = info.State.Msgs, info.State.Bytes, info.State.FirstSeq, info.State.LastSeq
	snaps := map[string]*jetstream.ObjectInfo{}
	if n.obs != nil {
		infos, err := n.obs.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			return nil, fmt.Errorf("cluster overview: list the snapshots: %w", err)
		}
		for _, i := range infos {
			snaps[i.Name] = i
		}
	}
	for p := range n.l.cfg.Partitions {
		po := PartitionOverview{Partition: p}
		e, err := n.leases.Get(ctx, "lease."+strconv.Itoa(p))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("cluster overview: lease of partition %d: %w", p, err)
		default:
			po.Holder = string(e.Value())
		}
		if po.Head, err = n.l.PartitionHead(ctx, p); err != nil {
			return nil, fmt.Errorf("cluster overview: %w", err)
		}
		if i := snaps[snapshotName(p)]; i != nil {
			if st, err := snapshotMeta(i); err == nil {
				po.SnapshotOffset, po.SnapshotAt, po.SnapshotNode, po.SnapshotBytes = st.Offset, i.ModTime, i.Metadata["node"], i.Size
			}
		}
		out.Partitions = append(out.Partitions, po)
	}
	return out, nil
}
