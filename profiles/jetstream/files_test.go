package jetstream_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"cartera/profiles"
)

// countEvents returns how many events a person has in a partition's file
// on a node (0 when the file is not open there or the person not in it).
func countEvents(n *node, p int, user string) int {
	st, ok := n.files.Store(p)
	if !ok {
		return 0
	}
	prof, err := st.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: user})
	if errors.Is(err, profiles.ErrNotFound) || err != nil {
		return 0
	}
	return prof.EventCount
}

// With per-partition files, a person's state is in the file of their
// partition on the node that holds it, and nowhere else; a node opens a
// partition's file when it claims the partition and closes it when it
// gives it up. State moves with a partition: after a hand-over, the new
// owner's file holds the person's whole state (restored from the snapshot
// the leaving node took; TestCleanLeaveCarriesState purges the stream to
// be sure the state came from there).
func TestPartitionFiles(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	withFiles := func(n *node) { n.url, n.perPartition = ns.url(), true }
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), withFiles)
	b := startNodeWith(t, "b", filepath.Join(dir, "b"), withFiles)
	nodes := []*node{a, b}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })
	eventually(t, "each node has the files of its partitions open", func() bool {
		return slices.Equal(a.files.Open(), a.held()) && slices.Equal(b.files.Open(), b.held())
	})

	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	const users = 16
	ids := publish(t, ingest, users, 0, 160) // 10 events a user
	waitAppliedOnce(t, nodes, ids)
	partOf := func(u string) int { return ingest.Partition(trackEvent(u, 0)) }
	for i := range users {
		u := "u" + strconv.Itoa(i)
		p := partOf(u)
		for _, n := range nodes {
			for _, q := range n.files.Open() {
				want := 0
				if q == p {
					want = 10
				}
				if got := countEvents(n, q, u); got != want {
					t.Fatalf("%s (partition %d) has %d events in node %s's file of partition %d, want %d", u, p, got, n.id, q, want)
				}
			}
		}
	}
	// (A node may also have files of partitions it held for a while, as
	// a did alone before b joined.)
	for _, n := range nodes {
		for _, p := range n.held() {
			if _, err := os.Stat(profiles.PartitionPath(n.path, p)); err != nil {
				t.Fatalf("node %s holds partition %d: %v", n.id, p, err)
			}
		}
	}

	// b leaves: a opens files of b's partitions, restored from b's
	// snapshots; b's are closed and kept.
	bHeld := b.held()
	waitCheckpointed(t, ns.url())
	b.close()
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	ids = append(ids, publish(t, ingest, users, 1000, 32)...) // 2 more a user
	waitAppliedOnce(t, nodes, ids)
	for i := range users {
		u := "u" + strconv.Itoa(i)
		p := partOf(u)
		if got := countEvents(a, p, u); got != 12 {
			t.Fatalf("%s (partition %d, b's: %v) has %d events in a's file, want 12", u, p, slices.Contains(bHeld, p), got)
		}
	}
	for _, p := range bHeld {
		if _, err := os.Stat(profiles.PartitionPath(b.path, p)); err != nil {
			t.Fatalf("b's file of partition %d after it left: %v", p, err)
		}
	}
}
