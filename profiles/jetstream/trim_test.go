package jetstream_test

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"cartera/profiles/jetstream"
)

// msgIDsInStream returns the messageIds of the records the stream holds.
func msgIDsInStream(t *testing.T, url string) []string {
	t.Helper()
	return slices.Sorted(maps.Keys(offsetsInStream(t, url)))
}

// A node trims each partition it holds below the partition's snapshot,
// as far as the retention lets it, and never above: records stored
// within the retention, and records no snapshot covers, stay. A node
// that takes the partitions over after the trim restores the snapshots
// and replays what stayed: every event is in its person's state, once.
func TestNodeTrimsBelowItsSnapshots(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	// No snapshot but at a clean leave (the defaults are 50,000 events
	// or 5 minutes), so that the test says which records one covers.
	withFiles := func(n *node) { n.url, n.perPartition = ns.url(), true }
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), withFiles)
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	partOf := func(u string) int { return ingest.Partition(trackEvent(u, 0)) }
	const users = 24

	first := publish(t, ingest, users, 0, 96)
	time.Sleep(10 * time.Millisecond) // the stream's clock moves past the first batch
	between := time.Now()
	time.Sleep(10 * time.Millisecond)
	second := publish(t, ingest, users, 1000, 96)
	waitCheckpointed(t, ns.url())
	if k, err := a.node.Trim(t.Context(), time.Now()); err != nil || k != 0 {
		t.Fatalf("trim with no snapshot: %d partitions (%v), want 0", k, err)
	}
	all := slices.Sorted(slices.Values(append(slices.Clone(first), second...)))
	if got := msgIDsInStream(t, ns.url()); !slices.Equal(got, all) {
		t.Fatalf("a partition with no snapshot was trimmed: %d of %d records left", len(got), len(all))
	}

	// a leaves cleanly: its snapshots cover both batches. b takes over
	// and applies a third batch, which no snapshot covers.
	a.close()
	b := startNodeWith(t, "b", filepath.Join(dir, "b"), withFiles)
	eventually(t, "b holds every partition", func() bool { return len(b.held()) == testPartitions })
	third := publish(t, ingest, users, 2000, 96)
	waitCheckpointed(t, ns.url())

	cases := []struct {
		name string
		now  time.Time
		want []string // what the stream holds after the trim
	}{
		{"everything within the retention", between.Add(-time.Hour), slices.Concat(first, second, third)},
		{"the first batch is older than the retention", between, slices.Concat(second, third)},
		{"the retention lets everything go: down to the snapshots", time.Now().Add(time.Hour), third},
	}
	for _, c := range cases {
		if _, err := b.node.Trim(t.Context(), c.now); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		slices.Sort(c.want)
		if got := msgIDsInStream(t, ns.url()); !slices.Equal(got, c.want) {
			t.Fatalf("%s: the stream holds %d records, want %d (%d of the first batch, %d of the second, %d of the third)",
				c.name, len(got), len(c.want), countOf(got, first), countOf(got, second), countOf(got, third))
		}
	}
	if k, err := b.node.Trim(t.Context(), time.Now().Add(time.Hour)); err != nil || k != 0 {
		t.Fatalf("a second trim to the same snapshots trimmed %d partitions (%v), want 0", k, err)
	}

	// b dies; c restores the snapshots and replays the third batch. It
	// snapshots often and trims on its own, every 50 ms.
	b.kill()
	c := startNodeWith(t, "c", filepath.Join(dir, "c"), func(n *node) {
		withFiles(n)
		n.snapshots = testSnapshots
		n.trim = jetstream.TrimConfig{Every: 50 * time.Millisecond}
	})
	all = slices.Concat(first, second, third)
	why := ""
	t.Cleanup(func() {
		if t.Failed() && why != "" {
			t.Logf("c's state: %s", why)
		}
	})
	eventually(t, "c holds every event once", func() bool {
		why = storedOnce(stateOf(t, []*node{c}, partOf, users), all)
		return why == ""
	})
	eventually(t, "c trims what its snapshots cover", func() bool {
		return len(msgIDsInStream(t, ns.url())) == 0
	})
}

// countOf counts the ids of set in got.
func countOf(got, set []string) int {
	in := map[string]bool{}
	for _, id := range set {
		in[id] = true
	}
	n := 0
	for _, id := range got {
		if in[id] {
			n++
		}
	}
	return n
}
