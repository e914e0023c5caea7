package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

const (
	testPartitions = 8
	testTTL        = time.Second
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// applied counts, per messageId, the events a store committed (a
// processor: what a rolled-back transaction applied is not counted).
type applied struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *applied) Begin(*bbolt.Tx) profiles.TxProcessor { return &appliedTx{a: a} }

func (a *applied) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.n))
	for k, v := range a.n {
		out[k] = v
	}
	return out
}

type appliedTx struct {
	a   *applied
	ids []string
}

func (x *appliedTx) Event(_ *profiles.Profile, e *profiles.Event) ([]*profiles.Event, error) {
	x.ids = append(x.ids, e.MessageID)
	return nil, nil
}
func (x *appliedTx) Merged(*profiles.Profile, string) error { return nil }
func (x *appliedTx) Erased(*profiles.Profile) error         { return nil }
func (x *appliedTx) Flush() error                           { return nil }
func (x *appliedTx) Done(committed bool) {
	if !committed {
		return
	}
	x.a.mu.Lock()
	defer x.a.mu.Unlock()
	for _, id := range x.ids {
		x.a.n[id]++
	}
}

// node is a Cartera node in process: its own NATS connection, its own
// bbolt file, and its leases.
type node struct {
	t     *testing.T
	id    string
	path  string
	url   string
	log   *jetstream.Log
	store *profiles.Store
	node  *jetstream.Node
	seen  *applied
	down  bool
	// replicas is the stream's and the buckets' replication (1 when 0).
	replicas int
	// perPartition keeps each partition in a file of its own under path
	// (a folder), in files, instead of one store.
	perPartition bool
	files        *profiles.PartitionFiles
	// snapshots is the node's snapshot config (with perPartition).
	snapshots jetstream.SnapshotConfig
	// maxEvents is profiles.max_events (the default when 0).
	maxEvents int
	// trim is how the node trims the stream below its snapshots.
	trim jetstream.TrimConfig
}

func startNode(t *testing.T, url, id, path string) *node {
	t.Helper()
	return startNodeWith(t, id, path, func(n *node) { n.url = url })
}

func startNodeWith(t *testing.T, id, path string, set func(*node)) *node {
	t.Helper()
	n := &node{t: t, id: id, path: path, seen: &applied{n: map[string]int{}}}
	set(n)
	n.start()
	t.Cleanup(n.close)
	return n
}

func (n *node) start() {
	t := n.t
	t.Helper()
	pcfg := profiles.DefaultConfig()
	if n.maxEvents > 0 {
		pcfg.MaxEvents = n.maxEvents
	}
	openStore := func(path string) (*profiles.Store, error) {
		return profiles.Open(context.Background(), path, pcfg, profiles.Options{Now: clocktest.New(t0).Now, Processors: []profiles.Processor{n.seen}, Logger: testLogger()})
	}
	var app jetstream.Applier
	var st *profiles.Store
	if n.perPartition {
		n.files = profiles.NewPartitionFiles(n.path, openStore)
		app = n.files
	} else {
		var err error
		if st, err = openStore(n.path); err != nil {
			t.Fatal(err)
		}
		app = st
	}
	cfg := testConfig(n.url)
	cfg.Partitions, cfg.Replicas = testPartitions, max(n.replicas, 1)
	l, err := jetstream.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := jetstream.StartNode(t.Context(), l, app, jetstream.NodeConfig{ID: n.id, LeaseTTL: testTTL, Snapshots: n.snapshots, Trim: n.trim, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	n.store, n.log, n.node, n.down = st, l, nd, false
}

// close leaves the cluster cleanly: partitions handed over at once.
func (n *node) close() {
	if n.down {
		return
	}
	n.down = true
	_ = n.node.Close()
	_ = n.log.Close()
	if n.store != nil {
		_ = n.store.Close()
	}
}

// kill cuts the node's connection first, as a crash would: it cannot
// renew, checkpoint or give anything up, and its leases lapse.
func (n *node) kill() {
	n.down = true
	_ = n.log.Close()
	_ = n.node.Close()
	if n.store != nil {
		_ = n.store.Close()
	}
}

func (n *node) held() []int {
	if n.down {
		return nil
	}
	return n.node.Held()
}

// eventually polls cond until it holds; the long bound only turns a hang
// into a failure.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// balanced says whether the live nodes hold every partition once, with
// shares that differ by one at most.
func balanced(nodes ...*node) bool {
	owner := map[int]bool{}
	lo, hi := testPartitions, 0
	live := 0
	for _, n := range nodes {
		if n.down {
			continue
		}
		live++
		h := n.held()
		lo, hi = min(lo, len(h)), max(hi, len(h))
		for _, p := range h {
			if owner[p] {
				return false
			}
			owner[p] = true
		}
	}
	return len(owner) == testPartitions && hi-lo <= 1 && live > 0
}

func trackEvent(user string, i int) []byte {
	e := &profiles.Event{Type: "track", MessageID: fmt.Sprintf("m-%s-%d", user, i), UserID: user, Event: "Step",
		Properties: map[string]any{"i": i}, Timestamp: t0, ReceivedAt: t0, Source: "web"}
	v, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return v
}

// publish appends events for users u0..u<users-1>, numbered from first,
// through a client of its own (any node can ingest any event), and
// returns their messageIds.
func publish(t *testing.T, l *jetstream.Log, users, first, n int) []string {
	t.Helper()
	var recs [][]byte
	var ids []string
	for i := range n {
		u := "u" + strconv.Itoa(i%users)
		recs = append(recs, trackEvent(u, first+i))
		ids = append(ids, fmt.Sprintf("m-%s-%d", u, first+i))
	}
	for len(recs) > 0 {
		k := min(50, len(recs))
		// A batch not acknowledged (a server down, a leader being
		// elected) is sent again, as a client would: a copy that was
		// stored after all is recognized by its messageIds.
		for try := 0; ; try++ {
			_, _, err := l.Append(t.Context(), recs[:k])
			if err == nil {
				break
			}
			if try == 50 {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		recs = recs[k:]
	}
	return ids
}

// appliedOnce checks that every one of ids was committed by exactly one
// node, once, and nothing else was.
func appliedOnce(nodes []*node, ids []string) (bool, string) {
	total := map[string]int{}
	for _, n := range nodes {
		for id, c := range n.seen.snapshot() {
			total[id] += c
		}
	}
	for _, id := range ids {
		if total[id] != 1 {
			return false, fmt.Sprintf("%s applied %d times", id, total[id])
		}
	}
	if len(total) != len(ids) {
		return false, fmt.Sprintf("%d messageIds applied, %d published", len(total), len(ids))
	}
	return true, ""
}

func waitAppliedOnce(t *testing.T, nodes []*node, ids []string) {
	t.Helper()
	var why string
	eventually(t, "every event applied exactly once", func() bool {
		ok, w := appliedOnce(nodes, ids)
		why = w
		if !ok && strings.Contains(w, "times") && !strings.HasSuffix(w, "0 times") {
			return true // a duplicate: fail below, not by waiting
		}
		return ok
	})
	if ok, _ := appliedOnce(nodes, ids); !ok {
		t.Fatal(why)
	}
}

// Three nodes share the partitions evenly; a node that dies has its
// partitions taken over once its leases lapse, a node that comes back and
// one that leaves cleanly rebalance them, and through all of it every
// acknowledged event is applied exactly once, by the node that held its
// partition, and a repeated messageId is not applied twice.
func TestNodesShareTakeOverAndRebalance(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	a := startNode(t, ns.url(), "a", filepath.Join(dir, "a.db"))
	b := startNode(t, ns.url(), "b", filepath.Join(dir, "b.db"))
	c := startNode(t, ns.url(), "c", filepath.Join(dir, "c.db"))
	nodes := []*node{a, b, c}
	eventually(t, "three nodes hold 3, 3 and 2 partitions", func() bool { return balanced(nodes...) })

	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	ids := publish(t, ingest, 24, 0, 240)
	waitAppliedOnce(t, nodes, ids)
	// Each event was applied by the node holding its partition.
	for _, n := range nodes {
		for id := range n.seen.snapshot() {
			user := strings.Split(id, "-")[1]
			p := ingest.Partition(trackEvent(user, 0))
			if !slices.Contains(n.held(), p) {
				t.Fatalf("node %s applied %s of partition %d, which it does not hold (%v)", n.id, id, p, n.held())
			}
		}
	}

	// c dies; the events published meanwhile for its partitions wait for
	// its leases to lapse, then a and b apply them.
	// Killed when every commit is checkpointed: a node that dies between
	// a commit and its checkpoint has that commit applied again by the
	// next owner (see TestKillMidLoad).
	waitCheckpointed(t, ns.url())
	cHeld := c.held()
	c.kill()
	ids = append(ids, publish(t, ingest, 24, 1000, 240)...)
	eventually(t, "a and b hold 4 partitions each", func() bool { return balanced(a, b) })
	waitAppliedOnce(t, nodes, ids)
	for _, p := range cHeld {
		if !slices.Contains(a.held(), p) && !slices.Contains(b.held(), p) {
			t.Fatalf("partition %d of the dead node is held by neither a (%v) nor b (%v)", p, a.held(), b.held())
		}
	}

	// A retried append (the same messageIds again) is not applied twice:
	// the node holding the partition recognizes them. (Only while the
	// partition stays on that node: the messageIds are in its file.)
	ids = append(ids, publish(t, ingest, 24, 1500, 48)...)
	waitAppliedOnce(t, nodes, ids)
	publish(t, ingest, 24, 1500, 48)
	waitCheckpointed(t, ns.url())
	if ok, why := appliedOnce(nodes, ids); !ok {
		t.Fatalf("after a retried append: %s", why)
	}

	// c comes back on its own file: the partitions spread over three
	// again, and c starts each after what its last owner checkpointed.
	c.start()
	eventually(t, "three nodes rebalance after c rejoins", func() bool { return balanced(a, b, c) })
	ids = append(ids, publish(t, ingest, 24, 2000, 240)...)
	waitAppliedOnce(t, nodes, ids)

	// b leaves cleanly: its partitions move at once, without a lapse.
	b.close()
	eventually(t, "a and c hold 4 partitions each", func() bool { return balanced(a, c) })
	ids = append(ids, publish(t, ingest, 24, 3000, 240)...)
	waitAppliedOnce(t, nodes, ids)

	waitCheckpointed(t, ns.url())
}

// waitCheckpointed waits until every partition's checkpoint is at its
// last record in the stream.
func waitCheckpointed(t *testing.T, url string) {
	t.Helper()
	last := map[int]uint64{}
	eachRecord(t, url, func(m *njs.RawStreamMsg) {
		p, _ := strconv.Atoi(strings.TrimPrefix(m.Subject, "cartera.events."))
		last[p] = m.Sequence
	})
	meta, err := clientJS(t, url).KeyValue(t.Context(), "CARTERA_EVENTS_META")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every checkpoint at its partition's last record", func() bool {
		for p := range testPartitions {
			e, err := meta.Get(t.Context(), "applied."+strconv.Itoa(p))
			if err != nil || string(e.Value()) != strconv.FormatUint(last[p], 10) {
				return false
			}
		}
		return true
	})
}

func clientJS(t *testing.T, url string) njs.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A node whose lease is taken stops applying that partition at once: an
// event for it is not committed while another holds the lease (the fence
// fails), and is applied, once, after the node claims it again.
func TestLostLeaseStopsApplying(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url(), "a", filepath.Join(t.TempDir(), "a.db"))
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })

	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)
	first := publish(t, ingest, 1, 0, 1)
	waitAppliedOnce(t, []*node{a}, first)
	p := ingest.Partition(trackEvent("u0", 0))

	// Another node takes the lease (as if a's had lapsed and it claimed).
	leases, err := clientJS(t, ns.url()).KeyValue(t.Context(), "CARTERA_EVENTS_LEASES")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leases.Put(t.Context(), "lease."+strconv.Itoa(p), []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	second := publish(t, ingest, 1, 1, 1)
	eventually(t, "a gives up the partition it lost", func() bool { return !slices.Contains(a.held(), p) })
	if got := a.seen.snapshot()[second[0]]; got != 0 {
		t.Fatalf("a applied %s while another node held its partition's lease", second[0])
	}
	// The intruder never renews: its lease lapses, a claims the partition
	// again and applies the event once.
	eventually(t, "a holds the partition again", func() bool { return slices.Contains(a.held(), p) })
	waitAppliedOnce(t, []*node{a}, append(first, second...))

	// Its metrics say so: every partition held, one more claim than
	// partitions, one lease lost, none handed over.
	m := nodeMetrics(t, a.node)
	for name, want := range map[string]float64{
		"cartera_cluster_partitions_held":           testPartitions,
		"cartera_cluster_partitions_claimed_total":  testPartitions + 1,
		"cartera_cluster_leases_lost_total":         1,
		"cartera_cluster_partitions_released_total": 0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (reported: %v), want %v", name, got, ok, want)
		}
	}
}

// nodeMetrics gathers a node's metrics by name, summed over their labels,
// and by name{label=value} for those with one label (a histogram by its
// count).
func nodeMetrics(t *testing.T, n *jetstream.Node) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
			out[f.GetName()] += v
			if ls := m.GetLabel(); len(ls) == 1 {
				out[f.GetName()+"{"+ls[0].GetName()+"="+ls[0].GetValue()+"}"] += v
			}
		}
	}
	return out
}

// The partition count is kept in the cluster's KV bucket: a node
// configured with another refuses to start and says why.
func TestPartitionCountInKV(t *testing.T) {
	ns := startNATS(t)
	cfg := testConfig(ns.url())
	_ = open(t, cfg)
	js := clientJS(t, ns.url())
	meta, err := js.KeyValue(t.Context(), "CARTERA_EVENTS_META")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := meta.Get(t.Context(), "partitions"); err != nil || string(e.Value()) != "8" {
		t.Fatalf("partition count in KV: %v (%v), want 8", e, err)
	}
	other := testConfig(ns.url())
	other.Partitions = 16
	_, err = jetstream.Open(t.Context(), other)
	if err == nil || !strings.Contains(err.Error(), "created with 8 partitions") || !strings.Contains(err.Error(), "CARTERA_EVENTS_META") {
		t.Fatalf("open with 16 partitions on a cluster of 8: %v", err)
	}
}

func TestNodeConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  jetstream.NodeConfig
		want string
	}{
		{jetstream.NodeConfig{ID: "node-1", LeaseTTL: time.Second}, ""},
		{jetstream.NodeConfig{ID: "", LeaseTTL: time.Second}, "cluster.node"},
		{jetstream.NodeConfig{ID: "a.b", LeaseTTL: time.Second}, "cluster.node"},
		{jetstream.NodeConfig{ID: "a", LeaseTTL: time.Millisecond}, "cluster.lease_ttl"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// A node killed while events flow loses nothing acknowledged: its
// partitions' events are all applied once its leases lapse. The only
// events applied twice are those of its last commits that it had not
// checkpointed when it died (the new owner starts after the checkpoint):
// they are at or below what the dead node's own file says it applied.
func TestKillMidLoad(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	a := startNode(t, ns.url(), "a", filepath.Join(dir, "a.db"))
	b := startNode(t, ns.url(), "b", filepath.Join(dir, "b.db"))
	nodes := []*node{a, b}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ingest := open(t, cfg)

	ld := startLoad(t, ingest, nil, func(i, j int) (string, int) { return "u" + strconv.Itoa(j), i*10 + j }, 0)
	eventually(t, "b applies some events", func() bool { return len(b.seen.snapshot()) >= 50 })
	bHeld := b.held()
	b.kill()
	eventually(t, "a holds every partition", func() bool { return len(a.held()) == testPartitions })
	n := ld.count()
	eventually(t, "more events after the takeover", func() bool { return ld.count() >= n+100 })
	offset, ids := ld.end()

	total := map[string]int{}
	for _, nd := range nodes {
		for id, c := range nd.seen.snapshot() {
			total[id] += c
		}
	}
	eventually(t, "every acknowledged event applied", func() bool {
		for id, c := range a.seen.snapshot() {
			total[id] = c + b.seen.snapshot()[id]
		}
		for _, id := range ids {
			if total[id] == 0 {
				return false
			}
		}
		return true
	})
	// What b's file says it applied of each partition.
	st, err := profiles.Open(context.Background(), b.path, profiles.DefaultConfig(), profiles.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bApplied := map[int]uint64{}
	for p := range testPartitions {
		bApplied[p] = st.PartitionApplied(p)
	}
	_ = st.Close()
	dups := 0
	for _, id := range ids {
		switch c := total[id]; {
		case c == 1:
		case c == 2:
			dups++
			user := strings.Split(id, "-")[1]
			p := ingest.Partition(trackEvent(user, 0))
			if !slices.Contains(bHeld, p) || b.seen.snapshot()[id] != 1 || offset[id] > bApplied[p] {
				t.Errorf("%s (partition %d, offset %d) applied twice, not as the dead node's last uncheckpointed commit (b held %v, applied %d of it)", id, p, offset[id], bHeld, bApplied[p])
			}
		default:
			t.Errorf("%s applied %d times", id, c)
		}
	}
	t.Logf("%d events, %d applied again after the kill", len(ids), dups)
}

// load appends batches of events until ended, keeping the offset of each
// acknowledged one (meaningful when the appender is one Log: a Router's
// batch may go to several partitions).
type load struct {
	mu     sync.Mutex
	offset map[string]uint64
	ids    []string
	stop   chan struct{}
	done   chan struct{}
}

// appender is a jetstream.Log or a jetstream.Router.
type appender interface {
	Append(ctx context.Context, recs [][]byte) (first, last uint64, err error)
}

// startBatches appends batch(i) (records and their messageIds) for i = 0,
// 1, … with a pause after each, until the load is ended. The offsets and
// ids go on from those given (nil: none).
func startBatches(t *testing.T, to appender, offset map[string]uint64, batch func(i int) ([][]byte, []string), pause time.Duration) *load {
	if offset == nil {
		offset = map[string]uint64{}
	}
	ld := &load{offset: offset, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ld.done)
		for i := 0; ; i++ {
			select {
			case <-ld.stop:
				return
			default:
			}
			recs, ids := batch(i)
			first, _, err := to.Append(context.Background(), recs)
			if err != nil {
				t.Error(err)
				return
			}
			ld.mu.Lock()
			for j, id := range ids {
				ld.offset[id] = first + uint64(j)
			}
			ld.ids = append(ld.ids, ids...)
			ld.mu.Unlock()
			time.Sleep(pause)
		}
	}()
	return ld
}

// startLoad starts appending to ingest batches of 10: event j of batch i
// is about the user and has the sequence number that event gives.
func startLoad(t *testing.T, ingest *jetstream.Log, offset map[string]uint64, event func(i, j int) (user string, seq int), pause time.Duration) *load {
	return startBatches(t, ingest, offset, func(i int) ([][]byte, []string) {
		var recs [][]byte
		var ids []string
		for j := range 10 {
			u, seq := event(i, j)
			recs = append(recs, trackEvent(u, seq))
			ids = append(ids, fmt.Sprintf("m-%s-%d", u, seq))
		}
		return recs, ids
	}, pause)
}

// count is how many events were acknowledged so far.
func (ld *load) count() int {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return len(ld.ids)
}

// end stops the load and returns each acknowledged messageId's offset and
// the ids in the order they were acknowledged.
func (ld *load) end() (map[string]uint64, []string) {
	close(ld.stop)
	<-ld.done
	return ld.offset, ld.ids
}

func testLogger() *slog.Logger {
	if os.Getenv("CARTERA_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
