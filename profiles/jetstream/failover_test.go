package jetstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	berrors "go.etcd.io/bbolt/errors"

	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// testSnapshots snapshots often: every 20 events, or 200 ms after events.
var testSnapshots = jetstream.SnapshotConfig{Events: 20, Interval: 200 * time.Millisecond}

// personState is what the owners' files hold of a person: their profile
// id, and how many of their stored events carry each messageId.
type personState struct {
	id   string
	msgs map[string]int
}

// stateOf reads each user's state from the file of their partition on
// every live node that holds it, and fails if a partition is held twice.
// A partition held by no node, or whose file closed under the read (a
// lease that lapsed on a slow machine and is being claimed again), is
// waited for, up to a minute.
func stateOf(t *testing.T, nodes []*node, partOf func(string) int, users int) map[string]personState {
	t.Helper()
	var out map[string]personState
	why := ""
	deadline := time.Now().Add(time.Minute)
	for {
		if out, why = readState(t, nodes, partOf, users); why == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readState is one try of stateOf: why says what was not there yet.
func readState(t *testing.T, nodes []*node, partOf func(string) int, users int) (map[string]personState, string) {
	t.Helper()
	holder := map[int]*node{}
	for _, n := range nodes {
		for _, p := range n.held() {
			if h := holder[p]; h != nil {
				t.Fatalf("partition %d held by %s and %s", p, h.id, n.id)
			}
			holder[p] = n
		}
	}
	out := map[string]personState{}
	for i := range users {
		u := "u" + strconv.Itoa(i)
		n := holder[partOf(u)]
		if n == nil {
			return nil, fmt.Sprintf("partition %d of %s is held by no node", partOf(u), u)
		}
		st, ok := n.files.Store(partOf(u))
		if !ok {
			return nil, fmt.Sprintf("node %s holds partition %d but has no file open", n.id, partOf(u))
		}
		prof, err := st.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: u})
		if errors.Is(err, profiles.ErrNotFound) {
			out[u] = personState{msgs: map[string]int{}}
			continue
		}
		if errors.Is(err, profiles.ErrClosed) || errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return nil, fmt.Sprintf("partition %d's file closed while it was read: %v", partOf(u), err)
		}
		if err != nil {
			t.Fatal(err)
		}
		evs, err := st.Events(prof.ID, 0)
		if errors.Is(err, profiles.ErrClosed) || errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return nil, fmt.Sprintf("partition %d's file closed while it was read: %v", partOf(u), err)
		}
		if err != nil {
			t.Fatal(err)
		}
		ps := personState{id: prof.ID, msgs: map[string]int{}}
		for _, e := range evs {
			ps.msgs[e.MessageID]++
		}
		out[u] = ps
	}
	return out, ""
}

// checkOnceInState checks that every one of ids is stored exactly once in
// the owners' files, and nothing else is.
func checkOnceInState(t *testing.T, state map[string]personState, ids []string) {
	t.Helper()
	if why := storedOnce(state, ids); why != "" {
		t.Fatal(why)
	}
}

// storedOnce says how state differs from every one of ids stored exactly
// once, and nothing else ("": it does not).
func storedOnce(state map[string]personState, ids []string) string {
	total := map[string]int{}
	for _, ps := range state {
		for id, c := range ps.msgs {
			total[id] += c
		}
	}
	var bad []string
	for _, id := range ids {
		if total[id] != 1 {
			bad = append(bad, fmt.Sprintf("%s is stored %d times", id, total[id]))
		}
	}
	if len(bad) > 0 {
		return fmt.Sprintf("%d of %d acknowledged messageIds not stored exactly once in the owners' files: %s", len(bad), len(ids), strings.Join(bad[:min(5, len(bad))], "; "))
	}
	if len(total) != len(ids) {
		return fmt.Sprintf("%d messageIds stored, %d acknowledged", len(total), len(ids))
	}
	return ""
}

// waitSnapshotted waits until the snapshot of every partition covers its
// last record in the stream.
func waitSnapshotted(t *testing.T, url string) (lastSeq uint64) {
	t.Helper()
	js := clientJS(t, url)
	stream, err := js.Stream(t.Context(), "CARTERA_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]uint64{}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(strings.TrimPrefix(m.Subject, "cartera.events."))
		last[p] = seq
	}
	obs, err := js.ObjectStore(t.Context(), "CARTERA_EVENTS_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every partition's snapshot at its last record", func() bool {
		for p, seq := range last {
			info, err := obs.GetInfo(t.Context(), fmt.Sprintf("p%04d", p))
			if err != nil {
				return false
			}
			if off, _ := strconv.ParseUint(info.Metadata["offset"], 10, 64); off < seq {
				return false
			}
		}
		return true
	})
	return info.State.LastSeq
}

// offsetsInStream returns the offset of each messageId in the stream.
func offsetsInStream(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	eachRecord(t, url, func(m *njs.RawStreamMsg) {
		var e profiles.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		out[e.MessageID] = m.Sequence
	})
	return out
}

// eachRecord calls f with each record in the stream, in order.
func eachRecord(t *testing.T, url string, f func(m *njs.RawStreamMsg)) {
	t.Helper()
	stream, err := clientJS(t, url).Stream(t.Context(), "CARTERA_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The record at or after seq: a partition's records may be trimmed
	// below its snapshot (Node.Trim), leaving holes.
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; {
		m, err := stream.GetMsg(t.Context(), seq, njs.WithGetMsgSubject("cartera.events.*"))
		if errors.Is(err, njs.ErrMsgNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Sequence > info.State.LastSeq {
			return
		}
		f(m)
		seq = m.Sequence + 1
	}
}

// purge drops the stream's records below seq, as its retention would once
// snapshots cover them: from then on a partition's earlier state exists
// only in its snapshot (and in its owner's file).
func purge(t *testing.T, url string, below uint64) {
	t.Helper()
	stream, err := clientJS(t, url).Stream(t.Context(), "CARTERA_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(t.Context(), njs.WithPurgeSequence(below)); err != nil {
		t.Fatal(err)
	}
}

// Three nodes, one file per partition, snapshots in the Object Store. One
// node dies in the middle of a load; its partitions are taken over once
// their leases lapse, restored from their snapshots and replayed from the
// offset each snapshot covers. Every acknowledged messageId is then
// stored exactly once in the owners' files (retries of earlier ones
// included: the messageIds that dedupe them moved with the state), a
// person keeps the profile id the dead node gave them, and the only
// events that went through the processors twice are those the dead node
// applied after its partition's last snapshot. The stream's records from
// before the load are purged first: state that was not restored would be
// missing.
func TestFailoverRestoresSnapshots(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	withFiles := func(n *node) { n.url, n.perPartition, n.snapshots = ns.url(), true, testSnapshots }
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), withFiles)
	b := startNodeWith(t, "b", filepath.Join(dir, "b"), withFiles)
	c := startNodeWith(t, "c", filepath.Join(dir, "c"), withFiles)
	nodes := []*node{a, b, c}
	eventually(t, "three nodes hold 3, 3 and 2 partitions", func() bool { return balanced(nodes...) })

	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	partOf := func(u string) int { return ingest.Partition(trackEvent(u, 0)) }
	const users = 24
	before := publish(t, ingest, users, 0, 240) // 10 events a user
	waitCheckpointed(t, ns.url())
	offset := offsetsInStream(t, ns.url())
	purge(t, ns.url(), waitSnapshotted(t, ns.url())+1)
	ids := slices.Clone(before)
	idsBefore := map[string]string{}
	for u, ps := range stateOf(t, nodes, partOf, users) {
		idsBefore[u] = ps.id
	}

	// The load: batches of 10 events, one for each of 10 users, until
	// stopped; the offset of each acknowledged one is kept.
	ld := startLoad(t, ingest, offset, func(i, j int) (string, int) { return "u" + strconv.Itoa((i+j)%users), 10_000 + i*10 + j }, 2*time.Millisecond)
	eventually(t, "c applies some of the load", func() bool {
		n := 0
		for id := range c.seen.snapshot() {
			if !slices.Contains(before, id) {
				n++
			}
		}
		return n >= 60
	})
	cHeld := c.held()
	killed := time.Now()
	c.kill()
	eventually(t, "a and b hold 4 partitions each", func() bool { return balanced(a, b) })
	t.Logf("c's partitions %v re-owned %s after the kill (lease %s)", cHeld, time.Since(killed).Round(time.Millisecond), testTTL)
	n := ld.count()
	eventually(t, "more events after the takeover", func() bool { return ld.count() >= n+100 })
	_, loaded := ld.end()
	ids = append(ids, loaded...)
	// Retries: earlier events sent again, from before the load and from
	// the load, are recognized by their messageIds.
	publish(t, ingest, users, 0, 48)
	var retry [][]byte
	for _, id := range ids[len(before) : len(before)+40] {
		parts := strings.Split(id, "-")
		i, _ := strconv.Atoi(parts[2])
		retry = append(retry, trackEvent(parts[1], i))
	}
	if _, _, err := ingest.Append(t.Context(), retry); err != nil {
		t.Fatal(err)
	}
	waitCheckpointed(t, ns.url())

	live := []*node{a, b}
	state := stateOf(t, live, partOf, users)
	checkOnceInState(t, state, ids)
	for u, id := range idsBefore {
		if state[u].id != id {
			t.Errorf("%s (partition %d) is profile %s on its owner, was %s before the kill", u, partOf(u), state[u].id, id)
		}
	}

	// Through the processors: an event goes through them again only when
	// its partition is restored from a snapshot older than it, on the
	// node that takes it over: c's partitions after the kill, and any
	// partition whose lease lapsed on a node too slow to renew it (a
	// loaded machine, a one-second lease). Each of c's partitions was
	// restored on a or b.
	restores := map[int][]uint64{}
	for _, nd := range nodes {
		for _, tm := range nd.node.Timings() {
			if tm.Step == jetstream.StepRestore {
				restores[tm.Partition] = append(restores[tm.Partition], tm.Offset)
			}
		}
	}
	for _, p := range cHeld {
		restoredLive := false
		for _, nd := range live {
			for _, tm := range nd.node.Timings() {
				restoredLive = restoredLive || (tm.Step == jetstream.StepRestore && tm.Partition == p)
			}
		}
		if !restoredLive {
			t.Fatalf("c's partition %d was not restored from a snapshot on a or b", p)
		}
	}
	// The live nodes' metrics count the restores they timed.
	timed, counted := 0, 0.0
	for _, nd := range live {
		for _, tm := range nd.node.Timings() {
			if tm.Step == jetstream.StepRestore {
				timed++
			}
		}
		counted += nodeMetrics(t, nd.node)["cartera_cluster_partition_step_seconds{step=restore}"]
	}
	if timed == 0 || counted != float64(timed) {
		t.Errorf("cartera_cluster_partition_step_seconds{step=\"restore\"} counts %v restores, the live nodes timed %d", counted, timed)
	}
	total := map[string]int{}
	for _, nd := range nodes {
		for id, k := range nd.seen.snapshot() {
			total[id] += k
		}
	}
	again := 0
	for _, id := range ids {
		k := total[id]
		if k <= 1 {
			continue
		}
		p := partOf(strings.Split(id, "-")[1])
		older := 0
		for _, off := range restores[p] {
			if off < offset[id] {
				older++
			}
		}
		if k-1 > older {
			t.Errorf("%s (partition %d, offset %d) went through the processors %d times; its partition was restored from an older snapshot %d times (%v)",
				id, p, offset[id], k, older, restores[p])
			continue
		}
		again++
	}
	t.Logf("%d events acknowledged, %d processed again (applied after their partition's last snapshot by a node that then died or lost its lease)", len(ids), again)
}

// A partition handed over on a clean leave carries its state: the new
// owner restores the snapshot the leaving node took after its last
// commit, and replays nothing (no event goes through the processors
// twice). When the node comes back, the partitions that return to it are
// restored again from the newer snapshots, not from its own older file:
// a person created meanwhile keeps their profile id.
func TestCleanLeaveCarriesState(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	withFiles := func(n *node) { n.url, n.perPartition, n.snapshots = ns.url(), true, testSnapshots }
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), withFiles)
	b := startNodeWith(t, "b", filepath.Join(dir, "b"), withFiles)
	nodes := []*node{a, b}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	partOf := func(u string) int { return ingest.Partition(trackEvent(u, 0)) }
	const users = 16
	ids := publish(t, ingest, users, 0, 160) // 10 events a user
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, ns.url())
	// Without the snapshot, the new owner would have to replay: purge.
	purge(t, ns.url(), waitSnapshotted(t, ns.url())+1)

	bHeld := b.held()
	b.close()
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	// u16.. are new people, created on a.
	ids = append(ids, publish(t, ingest, 2*users, 1000, 64)...) // 2 more events a user
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, ns.url())
	state := stateOf(t, []*node{a}, partOf, 2*users)
	checkOnceInState(t, state, ids)
	for i := range users {
		u := "u" + strconv.Itoa(i)
		if got := len(state[u].msgs); got != 12 {
			t.Fatalf("%s (partition %d, b's: %v) has %d events on a after b left, want 12", u, partOf(u), slices.Contains(bHeld, partOf(u)), got)
		}
	}
	purge(t, ns.url(), waitSnapshotted(t, ns.url())+1)

	// b comes back on its own files, older than a's snapshots.
	b.start()
	eventually(t, "a and b hold 4 partitions each again", func() bool { return balanced(a, b) })
	ids = append(ids, publish(t, ingest, 2*users, 2000, 64)...)
	waitAppliedOnce(t, nodes, ids)
	waitCheckpointed(t, ns.url())
	after := stateOf(t, nodes, partOf, 2*users)
	checkOnceInState(t, after, ids)
	for u, ps := range state {
		if after[u].id != ps.id {
			t.Errorf("%s (partition %d) is profile %s after b came back, was %s", u, partOf(u), after[u].id, ps.id)
		}
	}
}

// A node that leaves and comes back alone keeps its own files (the
// snapshots are of the same line and no further along): nothing is
// downloaded, nothing applied again, and its state is all there.
func TestRestartKeepsOwnFile(t *testing.T) {
	ns := startNATS(t)
	a := startNodeWith(t, "a", filepath.Join(t.TempDir(), "a"), func(n *node) {
		n.url, n.perPartition, n.snapshots = ns.url(), true, testSnapshots
	})
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	partOf := func(u string) int { return ingest.Partition(trackEvent(u, 0)) }
	ids := publish(t, ingest, 16, 0, 160)
	waitAppliedOnce(t, []*node{a}, ids)
	waitCheckpointed(t, ns.url())
	purge(t, ns.url(), waitSnapshotted(t, ns.url())+1)

	a.close()
	a.start()
	eventually(t, "a holds every partition again", func() bool { return len(a.held()) == testPartitions })
	ids = append(ids, publish(t, ingest, 16, 1000, 32)...)
	waitAppliedOnce(t, []*node{a}, ids)
	waitCheckpointed(t, ns.url())
	checkOnceInState(t, stateOf(t, []*node{a}, partOf, 16), ids)
	for _, tm := range a.node.Timings() {
		if tm.Step == jetstream.StepRestore {
			t.Fatalf("a restored partition %d from its snapshot instead of keeping its own file", tm.Partition)
		}
	}
}

// putGoneSnapshots puts a snapshot object for every partition and purges
// its chunks, as a newer upload replacing it would.
func putGoneSnapshots(t *testing.T, url string) njs.ObjectStore {
	t.Helper()
	js := clientJS(t, url)
	obs, err := js.CreateObjectStore(t.Context(), njs.ObjectStoreConfig{Bucket: "CARTERA_EVENTS_SNAPSHOTS"})
	if err != nil {
		t.Fatal(err)
	}
	objects, err := js.Stream(t.Context(), "OBJ_CARTERA_EVENTS_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	for p := range testPartitions {
		info, err := obs.Put(t.Context(), njs.ObjectMeta{Name: fmt.Sprintf("p%04d", p),
			Metadata: map[string]string{"offset": "5", "epoch": "gone"}}, strings.NewReader(strings.Repeat("x", 1000)))
		if err != nil {
			t.Fatal(err)
		}
		if err := objects.Purge(t.Context(), njs.WithPurgeSubject("$O.CARTERA_EVENTS_SNAPSHOTS.C."+info.NUID)); err != nil {
			t.Fatal(err)
		}
	}
	return obs
}

// A node whose snapshot download gets no chunk (the object was replaced
// after the node read its info, and the old chunks purged) gives up
// waiting after 10 lease TTLs and claims the partition again: it then
// restores the snapshot that replaced it.
func TestRestoreRetriesReplacedSnapshot(t *testing.T) {
	ns := startNATS(t)
	obs := putGoneSnapshots(t, ns.url())
	a := startNodeWith(t, "a", filepath.Join(t.TempDir(), "a"), func(n *node) { n.url, n.perPartition, n.snapshots = ns.url(), true, testSnapshots })
	eventually(t, "a claims every partition", func() bool { return len(a.held()) == testPartitions })

	// The replacing snapshots: copies of empty store files.
	srcDir := t.TempDir()
	src := profiles.NewPartitionFiles(srcDir, nil)
	for p := range testPartitions {
		st, err := profiles.Open(context.Background(), profiles.PartitionPath(srcDir, p), profiles.DefaultConfig(), profiles.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Close()
		var buf bytes.Buffer
		if _, err := src.Snapshot(p, &buf); err != nil {
			t.Fatal(err)
		}
		if _, err := obs.Put(t.Context(), njs.ObjectMeta{Name: fmt.Sprintf("p%04d", p),
			Metadata: map[string]string{"offset": "0", "epoch": "new"}}, &buf); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	ids := publish(t, ingest, 16, 0, 32)
	eventually(t, "every partition restored from its replacing snapshot", func() bool {
		n := 0
		for _, tm := range a.node.Timings() {
			if tm.Step == jetstream.StepRestore {
				n++
			}
		}
		return n == testPartitions
	})
	waitAppliedOnce(t, []*node{a}, ids)
}

// A node that leaves while it waits for a snapshot's chunks (here they
// are gone from the bucket) stops waiting: Close returns, and the
// partition's file is left as it was (none).
func TestCloseDuringRestore(t *testing.T) {
	ns := startNATS(t)
	putGoneSnapshots(t, ns.url())
	dir := filepath.Join(t.TempDir(), "a")
	a := startNodeWith(t, "a", dir, func(n *node) { n.url, n.perPartition, n.snapshots = ns.url(), true, testSnapshots })
	eventually(t, "a claims every partition", func() bool { return len(a.held()) == testPartitions })
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		a.close()
	}()
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("Close did not return while the node waited for a snapshot's chunks")
	}
	for p := range testPartitions {
		if st, err := profiles.PartitionFileState(profiles.PartitionPath(dir, p), p); err == nil {
			t.Fatalf("partition %d has a file after a restore that never finished: %+v", p, st)
		}
	}
}

// A node makes the folder its snapshots are written to before their
// upload (serve gives it one under the partitions' folder that nothing
// else makes: every snapshot failed there).
func TestSnapshotFolderMade(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	snaps := testSnapshots
	snaps.Dir = filepath.Join(dir, "partitions", "snapshots")
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), func(n *node) {
		n.url, n.perPartition, n.snapshots = ns.url(), true, snaps
	})
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	publish(t, open(t, cfg), 24, 0, 48)
	waitSnapshotted(t, ns.url())
}
