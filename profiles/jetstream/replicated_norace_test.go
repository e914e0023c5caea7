//go:build !race

// nats-server v2.15.3 has a data race of its own in the clustered stream
// path (server/jetstream_batching.go, batchStagedDiff.commit from
// processClusteredInboundMsg), which the race detector reports in about
// one run in ten of this test, in server goroutines only. So this test is
// built without -race, and `make test` runs it in a run of its own.

package jetstream_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// With the stream, both KV buckets and the snapshot bucket replicated on
// three servers, one server going down and a Cartera node dying at once
// lose nothing: the other node takes the dead one's partitions over (with
// one file per partition, restored from their snapshots) and every
// acknowledged event is applied exactly once.
func TestReplicatedClusterTakeOver(t *testing.T) {
	for _, mode := range []string{"one file", "file per partition"} {
		t.Run(mode, func(t *testing.T) { replicatedTakeOver(t, mode == "file per partition") })
	}
}

func replicatedTakeOver(t *testing.T, perPartition bool) {
	nc := startNATSCluster(t, 3)
	all := strings.Join(nc.URLs, ",")
	dir := t.TempDir()
	replicated := func(url string) func(*node) {
		return func(n *node) {
			n.url, n.replicas, n.perPartition = url, 3, perPartition
			if perPartition {
				n.snapshots = testSnapshots
			}
		}
	}
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), replicated(nc.URLs[0]+","+nc.URLs[1]))
	b := startNodeWith(t, "b", filepath.Join(dir, "b"), replicated(nc.URLs[1]+","+nc.URLs[0]))
	nodes := []*node{a, b}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })

	cfg := testConfig(all)
	cfg.Partitions, cfg.Replicas = testPartitions, 3
	ingest := open(t, cfg)
	ids := publish(t, ingest, 16, 0, 120)
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, nc.URLs[0])
	if perPartition {
		waitSnapshotted(t, nc.URLs[0])
	}

	// The third server goes down (the other two are a quorum) and b dies.
	nc.Server(2).Shutdown()
	nc.Server(2).WaitForShutdown()
	b.kill()
	ids = append(ids, publish(t, ingest, 16, 1000, 120)...)
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	if !perPartition {
		waitAppliedOnce(t, nodes, ids)
		return
	}
	// With snapshots, an event goes through the processors again when
	// its partition is restored from a snapshot older than it: b's, and
	// again if a's lease on it lapsed while a restored it (three servers
	// and two nodes on two loaded cores). What must hold is the state:
	// every event stored once in the owner's file.
	waitCheckpointed(t, nc.URLs[0])
	partOf := func(u string) int { return ingest.Partition(trackEvent(u, 0)) }
	why := ""
	waitFor(t, "every event stored once in a's files", &why, func() bool {
		state, notYet := readState(t, []*node{a}, partOf, 16)
		if why = notYet; why == "" {
			why = storedOnce(state, ids)
		}
		return why == ""
	})
}
