package jetstream_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	njs "github.com/nats-io/nats.go/jetstream"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// visitorEvent is a track event (identify when both ids are given) about
// a user id, an anonymous id, or both.
func visitorEvent(mid, user, anon string) []byte {
	e := &profiles.Event{Type: profiles.TypeTrack, MessageID: mid, UserID: user, AnonymousID: anon, Event: "Viewed",
		Timestamp: t0, ReceivedAt: t0, Source: "web"}
	if user != "" && anon != "" {
		e.Type, e.Event = profiles.TypeIdentify, ""
		e.Traits = map[string]any{"plan": "gold"}
	}
	v, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return v
}

// waitFor is eventually, saying at the end why the condition did not hold.
func waitFor(t *testing.T, what string, why *string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s (%s)", what, *why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newRouter makes a router on l; with cache, Append trusts what it read
// for as long as the test runs (the clock does not move), so events for a
// profile merged away go on being routed to it and forwarded.
func newRouter(t *testing.T, l *jetstream.Log, cache bool) *jetstream.Router {
	t.Helper()
	cfg := jetstream.RouterConfig{Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now}
	if cache {
		cfg.CacheTTL = time.Hour
	}
	r, err := jetstream.NewRouter(t.Context(), l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// profileOf resolves an event's identifiers without linking anything new
// (they are all known).
func profileOf(t *testing.T, r *jetstream.Router, rec []byte) string {
	t.Helper()
	e, err := profiles.DecodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	return resolveEvent(t, r, e)
}

// resolveEvent is the profile the router addresses e to.
func resolveEvent(t *testing.T, r *jetstream.Router, e *profiles.Event) string {
	t.Helper()
	pid, err := r.Resolve(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func partitionOf(l *jetstream.Log, pid string) int {
	return l.Partition(profiles.RoutedRecord(pid, nil))
}

// lookup finds, on whichever node holds its partition, the profile an
// identifier leads to (nil: none).
func lookup(nodes []*node, id profiles.Identifier) (*profiles.Profile, *profiles.Store) {
	for _, n := range nodes {
		if n.down {
			continue
		}
		for _, p := range n.files.Open() {
			st, ok := n.files.Store(p)
			if !ok {
				continue
			}
			prof, err := st.Lookup(id)
			if err == nil {
				return prof, st
			}
		}
	}
	return nil, nil
}

// people counts, over every open partition file, the profiles that hold
// an identifier.
func people(nodes []*node, id profiles.Identifier) int {
	n := 0
	for _, nd := range nodes {
		if nd.down {
			continue
		}
		for _, p := range nd.files.Open() {
			if st, ok := nd.files.Store(p); ok {
				if _, err := st.Lookup(id); err == nil {
					n++
				}
			}
		}
	}
	return n
}

// mergeSetup starts two nodes with a file per partition and a router, and
// finds a visitor and a user whose profiles are in different partitions
// (each made by one event, applied); it returns their first messageIds.
type mergeSetup struct {
	nodes      []*node
	ingest     *jetstream.Log
	router     *jetstream.Router
	user, anon string
	upid, apid string
	first      []string
	uIdent     profiles.Identifier
	aIdent     profiles.Identifier
}

func setUpMerge(t *testing.T, url string, snapshots jetstream.SnapshotConfig) *mergeSetup {
	t.Helper()
	dir := t.TempDir()
	// Every acknowledged event must be on the merged profile: the loads
	// run as fast as they are acknowledged, past the default 1,000 kept
	// on a slow machine, so the stores keep more.
	withFiles := func(n *node) {
		n.url, n.perPartition, n.snapshots, n.maxEvents = url, true, snapshots, 1_000_000
	}
	a := startNodeWith(t, "a", filepath.Join(dir, "a"), withFiles)
	b := startNodeWith(t, "b", filepath.Join(dir, "b"), withFiles)
	ms := &mergeSetup{nodes: []*node{a, b}}
	eventually(t, "two nodes hold 4 partitions each", func() bool { return balanced(a, b) })
	cfg := testConfig(url)
	cfg.Partitions = testPartitions
	ms.ingest = open(t, cfg)
	ms.router = newRouter(t, ms.ingest, true)
	for i := range 50 {
		user, anon := "user-"+strconv.Itoa(i), "anon-"+strconv.Itoa(i)
		recs := [][]byte{visitorEvent("m-"+user+"-first", user, ""), visitorEvent("m-"+anon+"-first", "", anon)}
		if _, _, err := ms.router.Append(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
		ms.first = append(ms.first, "m-"+user+"-first", "m-"+anon+"-first")
		upid, apid := profileOf(t, ms.router, recs[0]), profileOf(t, ms.router, recs[1])
		if upid == apid {
			t.Fatalf("two people with nothing in common got one profile %s", upid)
		}
		if partitionOf(ms.ingest, upid) != partitionOf(ms.ingest, apid) {
			ms.user, ms.anon, ms.upid, ms.apid = user, anon, upid, apid
			break
		}
	}
	if ms.user == "" {
		t.Fatal("no two people in different partitions among 50")
	}
	ms.uIdent = profiles.Identifier{Kind: profiles.KindUserID, Value: ms.user}
	ms.aIdent = profiles.Identifier{Kind: profiles.KindAnonymousID, Value: ms.anon}
	return ms
}

// startAckLoad appends events about one identity through a router, in
// batches of 5, until ended.
func startAckLoad(t *testing.T, r *jetstream.Router, name, user, anon string, pause time.Duration) *load {
	return startBatches(t, r, nil, func(i int) ([][]byte, []string) {
		var recs [][]byte
		var ids []string
		for j := range 5 {
			mid := fmt.Sprintf("m-%s-%d-%d", name, i, j)
			recs = append(recs, visitorEvent(mid, user, anon))
			ids = append(ids, mid)
		}
		return recs, ids
	}, pause)
}

// acked ends a load and returns the messageIds it had acknowledged.
func (ld *load) acked() []string {
	_, ids := ld.end()
	return ids
}

// merged waits until one profile holds both identities and every one of
// ids, and returns it with its store; then it checks each id is stored on
// it exactly once and nothing else is.
func (ms *mergeSetup) merged(t *testing.T, ids []string) (*profiles.Profile, *profiles.Store) {
	t.Helper()
	var prof *profiles.Profile
	var st *profiles.Store
	var why string
	waitFor(t, "one profile holds both people and every acknowledged event", &why, func() bool {
		prof, st = lookup(ms.nodes, ms.uIdent)
		if prof == nil {
			why = "no profile holds " + ms.user
			return false
		}
		if !prof.HasIdentity(ms.aIdent) {
			why = fmt.Sprintf("profile %s does not hold %s", prof.ID, ms.anon)
			return false
		}
		if prof.EventCount != len(ids) {
			why = fmt.Sprintf("profile %s holds %d events, want %d", prof.ID, prof.EventCount, len(ids))
			return false
		}
		// The loser's partition commits its removal after it sent the
		// state, so the survivor can hold both people a moment before
		// the loser is gone.
		for _, id := range []profiles.Identifier{ms.uIdent, ms.aIdent} {
			if n := people(ms.nodes, id); n != 1 {
				why = fmt.Sprintf("%d profiles hold %s, want 1", n, id.Value)
				return false
			}
		}
		return true
	})
	events, err := st.Events(prof.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.MessageID)
	}
	want := slices.Clone(ids)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the merged profile's events are not the acknowledged ones once each: %d stored, %d acknowledged; first stored %v", len(got), len(want), got[:min(5, len(got))])
	}
	return prof, st
}

// A visitor and a user, each with a profile in another partition, keep
// sending events while an identify links them: the router merges them in
// the identity index, the newer profile's partition sends its state to the
// older one's, and the events routed to the newer one before the merge
// but appended after it are forwarded. In the end one profile holds both
// identities and every acknowledged event once, and each event went
// through the processors once. A record addressed to the merged-away
// profile later (a router that resolved before the merge) is forwarded
// too, and a retried messageId is still a duplicate.
func TestMergeAcrossPartitionsUnderLoad(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{})
	waitAppliedOnce(t, ms.nodes, ms.first)

	// Each person's events come through a router of their own (other
	// nodes), whose cache keeps routing them to the person's old profile
	// after the merge: the loser's partition forwards them.
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	ul := startAckLoad(t, newRouter(t, open(t, cfg), true), "u", ms.user, "", 0)
	al := startAckLoad(t, newRouter(t, open(t, cfg), true), "a", "", ms.anon, 0)
	eventually(t, "both loads acknowledged events", func() bool { return ul.count() >= 20 && al.count() >= 20 })
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon)}); err != nil {
		t.Fatal(err)
	}
	n1, n2 := ul.count(), al.count()
	eventually(t, "both loads go on after the identify", func() bool { return ul.count() >= n1+20 && al.count() >= n2+20 })
	ids := append(append(append(ul.acked(), al.acked()...), "m-identify"), ms.first...)
	// Only this person's events (the others' first ones are elsewhere).
	ids = slices.DeleteFunc(ids, func(id string) bool {
		return strings.HasSuffix(id, "-first") && id != "m-"+ms.user+"-first" && id != "m-"+ms.anon+"-first"
	})
	if got := ms.router.Merges(); got != 1 {
		t.Fatalf("the router started %d merges, want 1", got)
	}

	prof, _ := ms.merged(t, ids)
	survivor, loser := min(ms.upid, ms.apid), max(ms.upid, ms.apid)
	if n := forwardedIn(t, ns.url(), loser); n == 0 {
		t.Fatal("no event of the load was forwarded from the loser's partition")
	} else {
		t.Logf("%d events forwarded from the loser's partition", n)
	}
	if prof.ID != survivor || !slices.Contains(prof.MergedFrom, loser) {
		t.Fatalf("the merged profile is %s (merged from %v), want %s with %s merged in", prof.ID, prof.MergedFrom, survivor, loser)
	}
	if partitionOf(ms.ingest, prof.ID) == partitionOf(ms.ingest, loser) {
		t.Fatal("the test's two profiles share a partition")
	}
	if i := slices.IndexFunc(prof.Ledger, func(l profiles.LedgerEntry) bool { return l.Action == profiles.LedgerMerge && l.Profile == loser }); i < 0 {
		t.Fatalf("no merge of %s in the ledger: %+v", loser, prof.Ledger)
	}

	// A router that resolved before the merge appends for the loser: the
	// loser's partition forwards it. A retry of an event the loser held
	// before the merge is forwarded and found a duplicate.
	late := profiles.RoutedRecord(loser, visitorEvent("m-late", "", ms.anon))
	retry := profiles.RoutedRecord(loser, visitorEvent("m-"+ms.anon+"-first", "", ms.anon))
	if _, _, err := ms.ingest.Append(t.Context(), [][]byte{late, retry}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, "m-late")
	if prof, _ = ms.merged(t, ids); prof.ID != survivor {
		t.Fatalf("the profile changed to %s", prof.ID)
	}
	all := append(slices.Clone(ids), othersFirst(ms)...)
	waitAppliedOnce(t, ms.nodes, all)
}

// forwardedIn counts the events addressed to profile pid that are in the
// stream after pid's MergeOut: its partition forwarded each of them.
func forwardedIn(t *testing.T, url, pid string) int {
	t.Helper()
	n, out := 0, false
	eachRecord(t, url, func(m *njs.RawStreamMsg) {
		to, body := profiles.RecordRoute(m.Data)
		switch {
		case to != pid:
		case profiles.IsMergeBody(body):
			out = true
		case out:
			n++
		}
	})
	return n
}

// othersFirst are the first events of the people setUpMerge tried before
// finding two in different partitions.
func othersFirst(ms *mergeSetup) []string {
	var out []string
	for _, id := range ms.first {
		if id != "m-"+ms.user+"-first" && id != "m-"+ms.anon+"-first" {
			out = append(out, id)
		}
	}
	return out
}

// A MergeIn applied twice (its sender died between appending it and
// committing the MergeOut, and its next owner sends it again) merges
// once: the survivor remembers the merge.
func TestMergeInTwiceMergesOnce(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{})
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon)}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"m-" + ms.user + "-first", "m-" + ms.anon + "-first", "m-identify"}
	prof, _ := ms.merged(t, ids)

	// Find the MergeIn in the survivor's partition and append it again.
	var mergeIn []byte
	eachRecord(t, ns.url(), func(m *njs.RawStreamMsg) {
		if pid, body := profiles.RecordRoute(m.Data); pid == prof.ID && profiles.IsMergeBody(body) {
			mergeIn = m.Data
		}
	})
	if mergeIn == nil {
		t.Fatal("no MergeIn record in the survivor's partition")
	}
	if _, _, err := ms.ingest.Append(t.Context(), [][]byte{mergeIn, profiles.RoutedRecord(prof.ID, visitorEvent("m-after", ms.user, ""))}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, "m-after")
	prof2, _ := ms.merged(t, ids)
	if len(prof2.MergedFrom) != len(prof.MergedFrom) {
		t.Fatalf("merged from %v after the MergeIn again, %v before", prof2.MergedFrom, prof.MergedFrom)
	}
}

// Routers on two nodes that see the same new person at once give them one
// profile id: the first compare-and-set create of an identifier wins, and
// the other router takes its profile. With two identifiers, racers may
// first make two profiles and merge them; afterwards every identifier
// leads to one profile on both routers.
func TestRoutersAgreeOnNewPeople(t *testing.T) {
	ns := startNATS(t)
	cfg := testConfig(ns.url())
	r1, r2 := newRouter(t, open(t, cfg), false), newRouter(t, open(t, cfg), false)
	race := func(mk func(g int) *profiles.Event) map[string]int {
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for g := range 8 {
			r := r1
			if g%2 == 1 {
				r = r2
			}
			wg.Go(func() {
				pid, err := r.Resolve(context.Background(), mk(g))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[pid]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	for i := range 10 {
		anon, user := "anon-"+strconv.Itoa(i), "user-"+strconv.Itoa(i)
		got := race(func(int) *profiles.Event {
			return &profiles.Event{Type: profiles.TypeTrack, AnonymousID: anon, MessageID: "x"}
		})
		if len(got) != 1 {
			t.Fatalf("person %d: 8 racers on one new identifier got %d profiles: %v", i, len(got), got)
		}
		// Half of them with a user id as well, new too.
		race(func(g int) *profiles.Event {
			e := &profiles.Event{Type: profiles.TypeTrack, UserID: user, MessageID: "x"}
			if g%4 >= 2 {
				e.AnonymousID = anon + "-2"
			}
			return e
		})
		want := profileOf(t, r1, visitorEvent("y", user, anon+"-2"))
		for _, r := range []*jetstream.Router{r1, r2} {
			for _, rec := range [][]byte{visitorEvent("y", "", anon+"-2"), visitorEvent("y", user, ""), visitorEvent("y", user, anon+"-2")} {
				if pid := profileOf(t, r, rec); pid != want {
					t.Fatalf("person %d: %s resolves to %s, want %s", i, rec, pid, want)
				}
			}
		}
	}
	t.Logf("%d merges among the racers", r1.Merges()+r2.Merges())
}

// Two users on one device (one anonymousId) stay two people, as on a
// single node, where a profile holds one user id: the router does not
// merge two profiles with different user ids, nor link a second user id
// to a profile; the event goes to the profile of its user id (or, with a
// new user id, to the device's profile, whose partition refuses the
// second user id in turn).
func TestRouterKeepsTwoUsersApart(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{})
	r := ms.router
	// user and anon become one; a second user has a profile of their own.
	recs := [][]byte{visitorEvent("m-identify", ms.user, ms.anon), visitorEvent("m-other", "other", "")}
	if _, _, err := r.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	first := profileOf(t, r, visitorEvent("y", ms.user, ""))
	other := profileOf(t, r, visitorEvent("y", "other", ""))
	merges := r.Merges()
	// The other user signs in on the same device, and a third, new, too.
	recs = [][]byte{visitorEvent("m-shared", "other", ms.anon), visitorEvent("m-third", "third", ms.anon)}
	if _, _, err := r.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if got := r.Merges(); got != merges {
		t.Fatalf("the router started %d merges for two users on one device", got-merges)
	}
	for _, c := range []struct {
		rec  []byte
		want string
	}{
		{visitorEvent("y", "other", ms.anon), other},
		{visitorEvent("y", "other", ""), other},
		{visitorEvent("y", ms.user, ""), first},
		{visitorEvent("y", "", ms.anon), first},
	} {
		if got := profileOf(t, r, c.rec); got != c.want {
			t.Fatalf("%s resolves to %s, want %s", c.rec, got, c.want)
		}
	}
	// The third user id was linked to nobody: alone, it is a new person.
	third := profileOf(t, r, visitorEvent("y", "third", ""))
	if third == first || third == other {
		t.Fatalf("the third user id resolves to an existing profile %s", third)
	}
	ids := []string{"m-" + ms.user + "-first", "m-" + ms.anon + "-first", "m-identify", "m-third"}
	ms.merged(t, ids)
	var why string
	waitFor(t, "the other user's profile holds its two events", &why, func() bool {
		p, _ := lookup(ms.nodes, profiles.Identifier{Kind: profiles.KindUserID, Value: "other"})
		if p == nil {
			why = "no profile"
			return false
		}
		why = fmt.Sprintf("%s holds %d events", p.ID, p.EventCount)
		return p.ID == other && p.EventCount == 2 && !p.HasIdentity(ms.aIdent)
	})
}

// The node that holds the loser's partition dies while both people keep
// sending events and an identify links them: its partitions are re-owned
// from their snapshots, and the MergeOut (or what follows it) is applied
// again from the stream, its MergeIn perhaps sent twice. Still one profile
// ends up with every acknowledged event once, under the survivor's id.
func TestMergeAcrossPartitionsNodeDies(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), testSnapshots)
	waitAppliedOnce(t, ms.nodes, ms.first)
	loser := max(ms.upid, ms.apid)
	victim := ms.nodes[0]
	if !slices.Contains(victim.held(), partitionOf(ms.ingest, loser)) {
		victim = ms.nodes[1]
	}
	survivorNode := ms.nodes[0]
	if survivorNode == victim {
		survivorNode = ms.nodes[1]
	}

	// Slow enough that the person's events stay under the 1,000 a
	// profile keeps through the lease's lapse.
	ul := startAckLoad(t, ms.router, "u", ms.user, "", 50*time.Millisecond)
	al := startAckLoad(t, ms.router, "a", "", ms.anon, 50*time.Millisecond)
	eventually(t, "both loads acknowledged events", func() bool { return ul.count() >= 30 && al.count() >= 30 })
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon)}); err != nil {
		t.Fatal(err)
	}
	victim.kill()
	eventually(t, "the other node holds every partition", func() bool { return len(survivorNode.held()) == testPartitions })
	n1, n2 := ul.count(), al.count()
	eventually(t, "both loads go on after the take-over", func() bool { return ul.count() >= n1+20 && al.count() >= n2+20 })
	ids := append(append(ul.acked(), al.acked()...), "m-identify", "m-"+ms.user+"-first", "m-"+ms.anon+"-first")

	prof, _ := ms.merged(t, ids)
	if prof.ID != min(ms.upid, ms.apid) || !slices.Contains(prof.MergedFrom, loser) {
		t.Fatalf("the merged profile is %s (merged from %v), want %s with %s merged in", prof.ID, prof.MergedFrom, min(ms.upid, ms.apid), loser)
	}
}

// A retry of an event the loser holds, routed to the survivor once the
// index forwards the loser but applied there before the loser's state
// comes, is stored once: the merge leaves the loser's copy out.
func TestRetryDuringMergeStoredOnce(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{})
	survivor, loser := min(ms.upid, ms.apid), max(ms.upid, ms.apid)
	user, anon := "", ms.anon
	if loser == ms.upid {
		user, anon = ms.user, ""
	}
	retried := "m-" + ms.anon + "-first"
	if user != "" {
		retried = "m-" + ms.user + "-first"
	}
	waitAppliedOnce(t, ms.nodes, ms.first)
	if _, _, err := ms.ingest.Append(t.Context(), [][]byte{profiles.RoutedRecord(survivor, visitorEvent(retried, user, anon))}); err != nil {
		t.Fatal(err)
	}
	var why string
	waitFor(t, "the retry applied to the survivor", &why, func() bool {
		for _, n := range ms.nodes {
			st, ok := n.files.Store(partitionOf(ms.ingest, survivor))
			if !ok {
				continue
			}
			evs, err := st.Events(survivor, 0)
			why = fmt.Sprintf("%d events (%v)", len(evs), err)
			return err == nil && len(evs) == 2
		}
		return false
	})
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon)}); err != nil {
		t.Fatal(err)
	}
	prof, _ := ms.merged(t, []string{"m-" + ms.user + "-first", "m-" + ms.anon + "-first", "m-identify"})
	if !slices.Contains(prof.MergedFrom, loser) {
		t.Fatalf("%s was not merged into %s", loser, prof.ID)
	}
}

// An unverified event from a client source (a public write key) does not
// merge a protected profile (one a server source sent events for) across
// partitions, nor link identifiers to it: it resolves among the other
// profiles, a new one if need be, as the store's guard does on one node.
// A verified event merges them.
func TestRouterGuardsProtectedProfiles(t *testing.T) {
	ns := startNATS(t)
	srcs, err := profiles.NewSources([]profiles.SourceConfig{{Name: "web", Trust: profiles.TrustClient}, {Name: "crm", Trust: profiles.TrustServer}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := jetstream.NewRouter(t.Context(), open(t, testConfig(ns.url())), jetstream.RouterConfig{
		Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now, Trust: srcs})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(source string, verified bool, user, anon, email string) *profiles.Event {
		e := &profiles.Event{Type: profiles.TypeIdentify, MessageID: "m", UserID: user, AnonymousID: anon, Source: source, Verified: verified}
		if email != "" {
			e.Traits = map[string]any{"email": email}
		}
		return e
	}
	resolve := func(e *profiles.Event) string { return resolveEvent(t, r, e) }
	vip := resolve(ev("crm", false, "vip", "", "vip@example.com"))
	x := resolve(ev("web", false, "", "x", ""))
	// A page claims the VIP's email, then their user id.
	if got := resolve(ev("web", false, "", "x", "vip@example.com")); got != x {
		t.Fatalf("an unverified claim of a protected email went to %s, want the visitor's own %s", got, x)
	}
	y := resolve(ev("web", false, "vip", "y", ""))
	if y == vip || y == x {
		t.Fatalf("an unverified claim of a protected user id with a new anonymous id went to %s (vip %s, x %s), want a new profile", y, vip, x)
	}
	for _, c := range []struct {
		e    *profiles.Event
		want string
	}{
		{ev("crm", false, "", "", "vip@example.com"), vip},
		{ev("crm", false, "vip", "", ""), vip},
		{ev("crm", false, "", "x", ""), x},
		{ev("crm", false, "", "y", ""), y},
	} {
		if got := resolve(c.e); got != c.want {
			t.Fatalf("%+v resolves to %s, want %s", c.e, got, c.want)
		}
	}
	if n := r.Merges(); n != 0 {
		t.Fatalf("%d merges from unverified claims", n)
	}
	// The same from a verified event merges the visitor into the VIP.
	if got := resolve(ev("web", true, "vip", "x", "")); got != min(vip, x) {
		t.Fatalf("a verified event went to %s, want %s", got, min(vip, x))
	}
	if n := r.Merges(); n != 1 {
		t.Fatalf("%d merges after a verified event, want 1", n)
	}
}

// Identifier limits above one hold across partitions: with two emails a
// profile, two profiles that would hold three together are not merged,
// and a third email is not linked to a profile that holds two.
func TestRouterKeepsEmailLimit(t *testing.T) {
	ns := startNATS(t)
	idcfg := profiles.DefaultIdentityConfig()
	idcfg.Limits[profiles.KindEmail] = 2
	r, err := jetstream.NewRouter(t.Context(), open(t, testConfig(ns.url())), jetstream.RouterConfig{Identity: idcfg, Now: clocktest.New(t0).Now})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(anon, email string) *profiles.Event {
		return &profiles.Event{Type: profiles.TypeIdentify, MessageID: "m", AnonymousID: anon, Traits: map[string]any{"email": email}, Source: "web"}
	}
	resolve := func(e *profiles.Event) string { return resolveEvent(t, r, e) }
	a := resolve(ev("pa", "a1@example.com"))
	if got := resolve(ev("pa", "a2@example.com")); got != a {
		t.Fatalf("a second email went to %s, want %s", got, a)
	}
	b := resolve(ev("pb", "b1@example.com"))
	// pa's profile (two emails) and b1's (one) would hold three.
	if got := resolve(ev("pa", "b1@example.com")); got != b {
		t.Fatalf("the event went to %s, want the profile of its most trusted identifier (the email's) %s", got, b)
	}
	if n := r.Merges(); n != 0 {
		t.Fatalf("%d merges past the email limit", n)
	}
	// A third email is not linked to a: alone, it is a new person.
	if got := resolve(ev("pa", "a3@example.com")); got != a {
		t.Fatalf("the event went to %s, want %s", got, a)
	}
	if got := resolve(&profiles.Event{Type: profiles.TypeIdentify, Traits: map[string]any{"email": "a3@example.com"}}); got == a {
		t.Fatal("a third email was linked to a profile that holds two")
	}
	// One email each merges: c and d hold two together.
	c := resolve(ev("pc", "c1@example.com"))
	d := resolve(ev("pd", "d1@example.com"))
	if got := resolve(ev("pc", "d1@example.com")); got != min(c, d) || r.Merges() != 1 {
		t.Fatalf("two profiles of one email each: went to %s (c %s, d %s), %d merges, want a merge into %s", got, c, d, r.Merges(), min(c, d))
	}
}

// Erasing a person from the index removes the keys of their identifiers:
// a later event with them makes a new profile, and the index holds no key
// of theirs but the forwards of profiles merged into them.
func TestRouterErase(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{})
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon), visitorEvent("m-other", "other", "")}); err != nil {
		t.Fatal(err)
	}
	prof, _ := ms.merged(t, []string{"m-" + ms.user + "-first", "m-" + ms.anon + "-first", "m-identify"})
	other := profileOf(t, ms.router, visitorEvent("y", "other", ""))
	if err := ms.router.Erase(t.Context(), prof); err != nil {
		t.Fatal(err)
	}
	kv, err := clientJS(t, ns.url()).KeyValue(t.Context(), "CARTERA_EVENTS_IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, prof.ID) && !strings.HasPrefix(k, "fwd.") {
			t.Errorf("key %s of the erased profile is still in the index", k)
		}
	}
	for _, rec := range [][]byte{visitorEvent("y", ms.user, ""), visitorEvent("y", "", ms.anon)} {
		if pid := profileOf(t, ms.router, rec); pid == prof.ID || slices.Contains(prof.MergedFrom, pid) {
			t.Fatalf("%s resolves to the erased profile %s after the erasure", rec, pid)
		}
	}
	if got := profileOf(t, ms.router, visitorEvent("y", "other", "")); got != other {
		t.Fatalf("another person's identifier resolves to %s after an erasure, want %s", got, other)
	}
}

// A loser's state larger than the server's largest message is sent
// without its oldest events, halved until it fits, and the survivor's
// ledger says how many were left out: the merge does not stall the
// partition.
func TestMergeOfLargeStateLeavesOutOldestEvents(t *testing.T) {
	s, err := newNATSServer(t.TempDir(), func(o *server.Options) { o.MaxPayload = 64 << 10 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	ms := setUpMerge(t, s.ClientURL(), jetstream.SnapshotConfig{})
	loser := max(ms.upid, ms.apid)
	user, anon, name := ms.user, "", ms.user
	if loser == ms.apid {
		user, anon, name = "", ms.anon, ms.anon
	}
	var recs [][]byte
	for i := range 999 {
		recs = append(recs, visitorEvent(fmt.Sprintf("m-%s-%03d", name, i), user, anon))
	}
	for len(recs) > 0 {
		k := min(100, len(recs))
		if _, _, err := ms.router.Append(t.Context(), recs[:k]); err != nil {
			t.Fatal(err)
		}
		recs = recs[k:]
	}
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon)}); err != nil {
		t.Fatal(err)
	}
	var prof *profiles.Profile
	var st *profiles.Store
	why := ""
	waitFor(t, "the loser merged", &why, func() bool {
		prof, st = lookup(ms.nodes, ms.uIdent)
		why = fmt.Sprintf("%+v", prof)
		return prof != nil && slices.Contains(prof.MergedFrom, loser)
	})
	i := slices.IndexFunc(prof.Ledger, func(l profiles.LedgerEntry) bool { return l.Action == profiles.LedgerMerge && l.Profile == loser })
	if i < 0 || !strings.Contains(prof.Ledger[i].Reason, "oldest events of the merged profile were left out") {
		t.Fatalf("the merge's ledger entry does not say events were left out: %+v", prof.Ledger)
	}
	events, err := st.Events(prof.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The survivor's first event and the identify, and the newest of the
	// loser's 1,000: a suffix of them, in order.
	var kept []string
	for _, e := range events {
		if strings.HasPrefix(e.MessageID, "m-"+name+"-") && e.MessageID != "m-"+name+"-first" {
			kept = append(kept, e.MessageID)
		}
	}
	if len(kept) == 0 || len(kept) >= 999 || len(events) != len(kept)+2 || prof.EventCount != len(events) {
		t.Fatalf("%d of the loser's events kept, %d stored, event count %d", len(kept), len(events), prof.EventCount)
	}
	slices.Sort(kept)
	if want := fmt.Sprintf("m-%s-%03d", name, 998); kept[len(kept)-1] != want || kept[0] != fmt.Sprintf("m-%s-%03d", name, 999-len(kept)) {
		t.Fatalf("kept %s to %s, want the newest %d ending at %s", kept[0], kept[len(kept)-1], len(kept), want)
	}
	t.Logf("%d of the loser's 1,000 events kept", len(kept))
}

// An alias (previousId) that links two profiles in different partitions
// merges them, as an identify does: the router takes the previousId for a
// user id if the index knows it as one, else for an anonymous id.
func TestAliasMergesAcrossPartitions(t *testing.T) {
	ns := startNATS(t)
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{})
	alias, err := json.Marshal(&profiles.Event{Type: profiles.TypeAlias, MessageID: "m-alias", UserID: ms.user, PreviousID: ms.anon,
		Timestamp: t0, ReceivedAt: t0, Source: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ms.router.Append(t.Context(), [][]byte{alias}); err != nil {
		t.Fatal(err)
	}
	prof, _ := ms.merged(t, []string{"m-" + ms.user + "-first", "m-" + ms.anon + "-first", "m-alias"})
	if !slices.Contains(prof.MergedFrom, max(ms.upid, ms.apid)) {
		t.Fatalf("merged from %v, want %s", prof.MergedFrom, max(ms.upid, ms.apid))
	}
}

// The node holding the loser's partition dies after applying the
// MergeOut, before any snapshot covers it: the partition's next owner
// applies it again from the stream (recreating the loser from its earlier
// records first), and sends the MergeIn a second time; the survivor
// merges once. Events afterwards, routed afresh or to the loser, end on
// the survivor once.
func TestMergeOutAppliedAgainAfterCrash(t *testing.T) {
	ns := startNATS(t)
	// No snapshot after the hand-overs of the start: a crash replays the
	// partitions from there.
	ms := setUpMerge(t, ns.url(), jetstream.SnapshotConfig{Events: 1_000_000, Interval: time.Hour})
	waitAppliedOnce(t, ms.nodes, ms.first)
	survivor, loser := min(ms.upid, ms.apid), max(ms.upid, ms.apid)
	if _, _, err := ms.router.Append(t.Context(), [][]byte{visitorEvent("m-identify", ms.user, ms.anon)}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"m-" + ms.user + "-first", "m-" + ms.anon + "-first", "m-identify"}
	ms.merged(t, ids)
	victim, rest := ms.nodes[0], ms.nodes[1]
	if !slices.Contains(victim.held(), partitionOf(ms.ingest, loser)) {
		victim, rest = rest, victim
	}
	victim.kill()
	eventually(t, "the other node holds every partition", func() bool { return len(rest.held()) == testPartitions })

	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	fresh := newRouter(t, open(t, cfg), false)
	late := profiles.RoutedRecord(loser, visitorEvent("m-late", "", ms.anon))
	if _, _, err := ms.ingest.Append(t.Context(), [][]byte{late}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fresh.Append(t.Context(), [][]byte{visitorEvent("m-after-u", ms.user, ""), visitorEvent("m-after-a", "", ms.anon)}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, "m-late", "m-after-u", "m-after-a")
	prof, _ := ms.merged(t, ids)
	times := 0
	for _, id := range prof.MergedFrom {
		if id == loser {
			times++
		}
	}
	if prof.ID != survivor || times != 1 {
		t.Fatalf("profile %s merged from %v, want %s with %s once", prof.ID, prof.MergedFrom, survivor, loser)
	}
	if n := mergeIns(t, ns.url(), survivor); n < 2 {
		t.Fatalf("%d MergeIn records for the survivor: the MergeOut was not applied again", n)
	}
}

// mergeIns counts the merge records addressed to pid in the stream.
func mergeIns(t *testing.T, url, pid string) int {
	t.Helper()
	n := 0
	eachRecord(t, url, func(m *njs.RawStreamMsg) {
		if to, body := profiles.RecordRoute(m.Data); to == pid && profiles.IsMergeBody(body) {
			n++
		}
	})
	return n
}

// With a secret, the index keys identifiers by their HMAC: routers with
// the same secret agree, and one with another secret, or none, refuses to
// start rather than split people.
func TestRouterSecret(t *testing.T) {
	ns := startNATS(t)
	cfg := testConfig(ns.url())
	mk := func(secret string) (*jetstream.Router, error) {
		rc := jetstream.RouterConfig{Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now}
		if secret != "" {
			rc.Secret = []byte(secret)
		}
		return jetstream.NewRouter(t.Context(), open(t, cfg), rc)
	}
	if _, err := mk("short"); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("a 5-byte secret: %v", err)
	}
	r1, err := mk("a secret of the cluster")
	if err != nil {
		t.Fatal(err)
	}
	pid := profileOf(t, r1, visitorEvent("m", "ana", ""))
	r2, err := mk("a secret of the cluster")
	if err != nil {
		t.Fatal(err)
	}
	if got := profileOf(t, r2, visitorEvent("m", "ana", "")); got != pid {
		t.Fatalf("a router with the same secret resolves ana to %s, want %s", got, pid)
	}
	for _, secret := range []string{"another secret of the cluster", ""} {
		if _, err := mk(secret); err == nil || !strings.Contains(err.Error(), "RouterConfig.Secret") {
			t.Fatalf("a router with secret %q on an index keyed by another: %v", secret, err)
		}
	}
	// No key of the index is the plain hash of ana's user id.
	kv, err := clientJS(t, ns.url()).KeyValue(t.Context(), "CARTERA_EVENTS_IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("user_id\x00ana"))
	if _, err := kv.Get(t.Context(), "id."+hex.EncodeToString(h[:16])); err == nil {
		t.Fatal("the index holds the unkeyed hash of an identifier")
	}
}
