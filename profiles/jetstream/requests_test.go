package jetstream_test

import (
	crand "crypto/rand"
	"errors"
	"strconv"
	"testing"
	"time"

	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// A request about a partition's people reaches whoever answers for it,
// and nobody once it stops answering (ErrNoHolder: ask again later).
func TestAskTheHolder(t *testing.T) {
	ns := startNATS(t)
	holder, asker := open(t, testConfig(ns.url())), open(t, testConfig(ns.url()))
	stop, err := holder.Answer(3, func(req []byte) []byte { return append([]byte("partition 3 says: "), req...) })
	if err != nil {
		t.Fatal(err)
	}
	got, err := asker.Ask(t.Context(), 3, []byte("hello"))
	if err != nil || string(got) != "partition 3 says: hello" {
		t.Fatalf("ask partition 3 = %q, %v", got, err)
	}
	if _, err := asker.Ask(t.Context(), 4, []byte("hello")); !errors.Is(err, jetstream.ErrNoHolder) {
		t.Fatalf("ask partition 4, which nobody answers = %v, want ErrNoHolder", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := asker.Ask(t.Context(), 3, []byte("hello")); !errors.Is(err, jetstream.ErrNoHolder) {
		t.Fatalf("ask partition 3 after its holder stopped = %v, want ErrNoHolder", err)
	}
	if holder.RequestSubject(3) == holder.PartitionSubject(3) {
		t.Fatalf("requests share the stream's subject %s", holder.RequestSubject(3))
	}
}

// Lookup finds the profile an identifier leads to, written as the store
// would normalize it, and follows merges; it links nothing new.
func TestRouterLookup(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	r := newRouter(t, l, false)
	ana := &profiles.Event{Type: profiles.TypeIdentify, MessageID: "m1", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web",
		Traits: map[string]any{"email": "Ana@Example.com"}}
	visitor := &profiles.Event{Type: profiles.TypeTrack, Event: "Page Viewed", MessageID: "m2", AnonymousID: "v1", Timestamp: t0, ReceivedAt: t0, Source: "web"}
	if _, _, err := r.Append(t.Context(), [][]byte{eventRecord(t, ana), eventRecord(t, visitor)}); err != nil {
		t.Fatal(err)
	}
	lookup := func(kind, value string) string {
		t.Helper()
		pid, err := r.Lookup(t.Context(), profiles.Identifier{Kind: kind, Value: value})
		if err != nil {
			t.Fatalf("lookup %s: %v", kind, err)
		}
		return pid
	}
	pid := lookup(profiles.KindUserID, "ana")
	if !profiles.ValidProfileID(pid) {
		t.Fatalf("ana's profile id %q", pid)
	}
	// A person's state is where the records addressed to them go.
	for i := range 20 {
		p := pid
		if i > 0 {
			var err error
			if p, err = profiles.NewProfileID(t0, crand.Reader); err != nil {
				t.Fatal(err)
			}
		}
		for _, body := range []string{`{"type":"track","event":"A","userId":"ana"}`, `{"type":"track","event":"B"}`} {
			if got, want := l.Partition(profiles.RoutedRecord(p, []byte(body))), l.ProfilePartition(p); got != want {
				t.Fatalf("a record addressed to %s goes to partition %d, ProfilePartition says %d", p, got, want)
			}
		}
	}
	if got := lookup(profiles.KindEmail, " ana@EXAMPLE.com "); got != pid {
		t.Fatalf("ana's email, written otherwise, leads to %q, want %q", got, pid)
	}
	if got := lookup(profiles.KindProfileID, pid); got != pid {
		t.Fatalf("ana's profile id leads to %q", got)
	}
	if got := lookup(profiles.KindUserID, "cy"); got != "" {
		t.Fatalf("an unknown person leads to %q", got)
	}
	if got := lookup(profiles.KindUserID, "cy"); got != "" {
		t.Fatalf("a second lookup of an unknown person leads to %q: the first linked it", got)
	}
	if _, err := r.Lookup(t.Context(), profiles.Identifier{Kind: "shoe_size", Value: "42"}); !errors.Is(err, profiles.ErrUnknownKind) {
		t.Fatalf("lookup of an unknown kind = %v, want ErrUnknownKind", err)
	}
	// The visitor signs in as Ana: their profiles merge, and the
	// visitor's device and old profile lead to the survivor.
	visitorPID := lookup(profiles.KindAnonymousID, "v1")
	if visitorPID == "" || visitorPID == pid {
		t.Fatalf("the visitor's profile %q (ana's %q)", visitorPID, pid)
	}
	signIn := &profiles.Event{Type: profiles.TypeIdentify, MessageID: "m3", UserID: "ana", AnonymousID: "v1", Timestamp: t0, ReceivedAt: t0, Source: "web"}
	if _, _, err := r.AppendEvents(t.Context(), []*profiles.Event{signIn}); err != nil { // as a node's ingestion does
		t.Fatal(err)
	}
	a, v, old := lookup(profiles.KindUserID, "ana"), lookup(profiles.KindAnonymousID, "v1"), lookup(profiles.KindProfileID, visitorPID)
	if a != v || old != a {
		t.Fatalf("after the merge ana leads to %s, the device to %s, the visitor's old profile to %s; want one profile", a, v, old)
	}
}

// On a node, an event a partition's store records itself (IngestFor: an
// email opened, a delivery's outcome) is appended to the partition's
// stream and applied from there, so the next owner replays it; a stream
// partitioned by user id (no identity index) has it committed straight
// into the file, since a record addressed to the profile would land in
// another partition.
func TestIngestForOnANodeGoesThroughTheStream(t *testing.T) {
	ns := startNATS(t)
	dir := t.TempDir()
	n := startNodeWith(t, "a", dir, func(n *node) { n.url, n.perPartition = ns.url(), true })
	eventually(t, "a holds every partition", func() bool { return len(n.held()) == testPartitions })
	cfg := testConfig(ns.url())
	cfg.Partitions = testPartitions
	l := open(t, cfg)
	r := newRouter(t, l, false)
	signUp := &profiles.Event{Type: profiles.TypeIdentify, MessageID: "m-ana", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"}
	if _, _, err := r.Append(t.Context(), [][]byte{eventRecord(t, signUp)}); err != nil {
		t.Fatal(err)
	}
	pid, err := r.Lookup(t.Context(), profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"})
	if err != nil || pid == "" {
		t.Fatalf("ana's profile %q, %v", pid, err)
	}
	p := l.ProfilePartition(pid)
	var st *profiles.Store
	eventually(t, "ana applied", func() bool {
		s, ok := n.files.Store(p)
		if !ok {
			return false
		}
		if _, err := s.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"}); err != nil {
			return false
		}
		st = s
		return true
	})
	before := st.PartitionApplied(p)
	if _, err := st.IngestFor(t.Context(), pid, &profiles.Event{Type: profiles.TypeTrack, Event: "Email Opened", MessageID: "open:k1", Source: "email"}); err != nil {
		t.Fatal(err)
	}
	if applied := st.PartitionApplied(p); applied <= before {
		t.Fatalf("partition %d applied through %d when IngestFor returned, as before it: no record of it went through the stream", p, applied)
	}
	prof, err := st.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"})
	if err != nil || prof.EventCount != 2 {
		t.Fatalf("ana: %+v, %v; want 2 events", prof, err)
	}

	// Partitioned by user id: the profile's record would go elsewhere.
	// (Of ten people, the first whose profile id hashes to another
	// partition than their user id: one in eight does not.)
	var bo *profiles.Profile
	var q int
	for i := range 10 {
		plain := trackEvent("bo"+strconv.Itoa(i), 1)
		if _, _, err := l.Append(t.Context(), [][]byte{plain}); err != nil {
			t.Fatal(err)
		}
		q = l.Partition(plain)
		eventually(t, "bo applied", func() bool {
			s, ok := n.files.Store(q)
			if !ok {
				return false
			}
			bo, err = s.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "bo" + strconv.Itoa(i)})
			st = s
			return err == nil
		})
		if l.ProfilePartition(bo.ID) != q {
			break
		}
	}
	if l.ProfilePartition(bo.ID) == q {
		t.Fatal("ten profile ids hashed to their people's partitions")
	}
	before = st.PartitionApplied(q)
	if _, err := st.IngestFor(t.Context(), bo.ID, &profiles.Event{Type: profiles.TypeTrack, Event: "Email Opened", MessageID: "open:k2", Source: "email"}); err != nil {
		t.Fatal(err)
	}
	if got := st.PartitionApplied(q); got != before {
		t.Fatalf("partition %d went from %d to %d, want nothing appended to it", q, before, got)
	}
	if prof, err := st.Lookup(profiles.Identifier{Kind: profiles.KindProfileID, Value: bo.ID}); err != nil || prof.EventCount != 2 {
		t.Fatalf("bo: %+v, %v; want 2 events", prof, err)
	}
}

// What one node broadcasts, every node listening hears, itself included.
func TestBroadcast(t *testing.T) {
	ns := startNATS(t)
	a, b := open(t, testConfig(ns.url())), open(t, testConfig(ns.url()))
	heard := make(chan string, 4)
	for _, l := range []*jetstream.Log{a, b} {
		stop, err := l.Listen("clock", func(data []byte) { heard <- string(data) })
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	if err := a.Broadcast("clock", []byte("24h")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case got := <-heard:
			if got != "24h" {
				t.Fatalf("heard %q", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a listener heard nothing")
		}
	}
}
