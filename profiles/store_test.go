package profiles

import (
	"bytes"
	"cartera/internal/clocktest"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/bbolt"
)

// t0 is the start of every fake clock and the default event time.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// testStore is a Store on a file in t.TempDir() with a fake clock and its
// own metrics.
type testStore struct {
	*Store
	t       testing.TB
	path    string
	cfg     Config
	clock   *clocktest.Clock
	metrics *Metrics
}

// openStore opens a fresh store in t.TempDir(); it is closed by t.Cleanup.
func openStore(t testing.TB, cfg Config) *testStore {
	t.Helper()
	ts := &testStore{
		t:       t,
		path:    filepath.Join(t.TempDir(), "cartera.db"),
		cfg:     cfg,
		clock:   clocktest.New(t0),
		metrics: NewMetrics(nil),
	}
	ts.open()
	return ts
}

func (ts *testStore) open() {
	ts.t.Helper()
	st, err := Open(context.Background(), ts.path, ts.cfg, Options{Now: ts.clock.Now, Metrics: ts.metrics})
	if err != nil {
		ts.t.Fatalf("open store: %v", err)
	}
	ts.t.Cleanup(func() {
		if err := st.Close(); err != nil {
			ts.t.Errorf("close store: %v", err)
		}
	})
	ts.Store = st
}

// reopen closes the store and opens the same file again, as a restart does.
func (ts *testStore) reopen() {
	ts.t.Helper()
	if err := ts.Close(); err != nil {
		ts.t.Fatalf("close store: %v", err)
	}
	ts.open()
}

func (ts *testStore) ingest(evs ...*Event) []Result {
	ts.t.Helper()
	res, err := ts.Ingest(context.Background(), evs)
	if err != nil {
		ts.t.Fatalf("ingest: %v", err)
	}
	if len(res) != len(evs) {
		ts.t.Fatalf("ingest: %d results for %d events", len(res), len(evs))
	}
	return res
}

// lookup returns the profile of kind:value and fails the test if there is none.
func (ts *testStore) lookup(kind, value string) *Profile {
	ts.t.Helper()
	p, err := ts.Lookup(Identifier{Kind: kind, Value: value})
	if err != nil {
		ts.t.Fatalf("lookup %s:%s: %v", kind, value, err)
	}
	return p
}

// notFound fails the test unless kind:value names no profile.
func (ts *testStore) notFound(kind, value string) {
	ts.t.Helper()
	p, err := ts.Lookup(Identifier{Kind: kind, Value: value})
	if !errors.Is(err, ErrNotFound) {
		id := ""
		if p != nil {
			id = p.ID
		}
		ts.t.Errorf("lookup %s:%s = profile %q, err %v; want ErrNotFound", kind, value, id, err)
	}
}

// messageIDs returns the messageIds of a profile's events, most recent first.
func (ts *testStore) messageIDs(profileID string, limit int) []string {
	ts.t.Helper()
	evs, err := ts.Events(profileID, limit)
	if err != nil {
		ts.t.Fatalf("events of %s: %v", profileID, err)
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.MessageID
	}
	return ids
}

// Event builders: newEvent(TypeTrack, "m1", named("Signed In"), user("u1")).

type eventOpt func(*Event)

func newEvent(typ, messageID string, opts ...eventOpt) *Event {
	e := &Event{Type: typ, MessageID: messageID, Timestamp: t0, ReceivedAt: t0, Source: "web"}
	for _, o := range opts {
		o(e)
	}
	return e
}

func identify(messageID string, opts ...eventOpt) *Event {
	return newEvent(TypeIdentify, messageID, opts...)
}

func track(messageID, name string, opts ...eventOpt) *Event {
	return newEvent(TypeTrack, messageID, append([]eventOpt{named(name)}, opts...)...)
}

func alias(messageID, userID, previousID string) *Event {
	return newEvent(TypeAlias, messageID, user(userID), previous(previousID))
}

func user(id string) eventOpt     { return func(e *Event) { e.UserID = id } }
func anon(id string) eventOpt     { return func(e *Event) { e.AnonymousID = id } }
func previous(id string) eventOpt { return func(e *Event) { e.PreviousID = id } }
func named(n string) eventOpt     { return func(e *Event) { e.Event = n } }
func source(s string) eventOpt    { return func(e *Event) { e.Source = s } }

// at sets the event time to t0+d.
func at(d time.Duration) eventOpt { return func(e *Event) { e.Timestamp = t0.Add(d) } }

// recv sets the server's receipt time to t0+d.
func recv(d time.Duration) eventOpt { return func(e *Event) { e.ReceivedAt = t0.Add(d) } }

func traits(kv ...any) eventOpt {
	return func(e *Event) { e.Traits = pairs(e.Traits, kv) }
}

func props(kv ...any) eventOpt {
	return func(e *Event) { e.Properties = pairs(e.Properties, kv) }
}

func pairs(m map[string]any, kv []any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// checkGraph walks the bbolt file read-only and reports every inconsistency
// between the buckets: identities pointing nowhere, profiles whose
// Identities differ from the graph, an identifier on two profiles, event
// counts that differ from the events stored, aliases to dead profiles, and a
// wrong profile count. It returns the live profiles by id.
func checkGraph(t testing.TB, st *Store) map[string]*Profile {
	t.Helper()
	profiles := map[string]*Profile{}
	err := st.DB().View(func(tx *bbolt.Tx) error {
		sidecarOwners := map[string]string{} // sidecar key → profile id
		if err := tx.Bucket(bucketProfiles).ForEach(func(k, v []byte) error {
			if !isProfileKey(k) {
				sidecarOwners[string(k)] = string(k[:idLen])
				return nil
			}
			var p Profile
			if err := decodeProfile(v, &p); err != nil {
				return fmt.Errorf("profile %s: %w", k, err)
			}
			if p.ID != string(k) {
				t.Errorf("profile under key %s has id %s", k, p.ID)
			}
			profiles[string(k)] = &p
			return nil
		}); err != nil {
			return err
		}

		// identities: every key points at a live profile, and each
		// profile's list is exactly the keys pointing at it.
		graph := map[string][]Identifier{}
		if err := tx.Bucket(bucketIdentities).ForEach(func(k, v []byte) error {
			kind, value, ok := bytes.Cut(k, []byte{0})
			if !ok {
				t.Errorf("identity key %q has no separator", k)
				return nil
			}
			id := Identifier{Kind: string(kind), Value: string(value)}
			if profiles[string(v)] == nil {
				t.Errorf("identity %s points at missing profile %s", id, v)
			}
			graph[string(v)] = append(graph[string(v)], id)
			return nil
		}); err != nil {
			return err
		}
		holder := map[Identifier]string{}
		for pid, p := range profiles {
			var listed []Identifier
			for _, r := range p.Identities {
				id := Identifier{Kind: r.Kind, Value: r.Value}
				if other, dup := holder[id]; dup {
					t.Errorf("identifier %s is on profiles %s and %s", id, other, pid)
				}
				holder[id] = pid
				listed = append(listed, id)
			}
			if !sameIdentifiers(listed, graph[pid]) {
				t.Errorf("profile %s lists identities %v, the graph has %v", pid, listed, graph[pid])
			}
		}

		// events: keys are profile id | time | seq, under live profiles,
		// as many as each profile counts.
		counts := map[string]int{}
		if err := tx.Bucket(bucketEvents).ForEach(func(k, _ []byte) error {
			if len(k) != idLen+16 {
				t.Errorf("event key %x has length %d", k, len(k))
				return nil
			}
			counts[string(k[:idLen])]++
			return nil
		}); err != nil {
			return err
		}
		for pid, n := range counts {
			if profiles[pid] == nil {
				t.Errorf("%d events stored under missing profile %s", n, pid)
			}
		}
		for pid, p := range profiles {
			if counts[pid] != p.EventCount {
				t.Errorf("profile %s: event_count %d, %d events stored", pid, p.EventCount, counts[pid])
			}
		}

		// sidecars belong to live profiles (a merge moves the loser's
		// messageIds, an erasure forgets them).
		for k, pid := range sidecarOwners {
			if profiles[pid] == nil {
				t.Errorf("sidecar %q of missing profile %s", k[idLen:], pid)
			}
		}
		// msgtime: each entry leads to the messageId it expires.
		if err := tx.Bucket(bucketMsgTime).ForEach(func(k, v []byte) error {
			id := string(k[8:])
			if len(v) == idLen {
				if tx.Bucket(bucketProfiles).Get(messageKey(string(v), id)) == nil {
					t.Errorf("msgtime entry of %s: not on profile %s", id, v)
				}
			} else if tx.Bucket(bucketMessages).Get([]byte(id)) == nil {
				t.Errorf("msgtime entry of %s: not in messages", id)
			}
			return nil
		}); err != nil {
			return err
		}

		// aliases: a merged-away id leads to a live profile that lists it.
		if err := tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			p := profiles[string(v)]
			switch {
			case p == nil:
				t.Errorf("alias %s points at missing profile %s", k, v)
			case !slices.Contains(p.MergedFrom, string(k)):
				t.Errorf("alias %s points at %s, which does not list it in merged_from", k, v)
			case profiles[string(k)] != nil:
				t.Errorf("alias %s is also a live profile", k)
			}
			return nil
		}); err != nil {
			return err
		}

		var stored int64
		if v := tx.Bucket(bucketMeta).Get(metaProfileCount); len(v) == 8 {
			stored = int64(binary.BigEndian.Uint64(v))
		}
		if stored != int64(len(profiles)) {
			t.Errorf("meta profile_count %d, %d profiles stored", stored, len(profiles))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk store: %v", err)
	}
	if got := st.ProfileCount(); got != int64(len(profiles)) {
		t.Errorf("ProfileCount() = %d, %d profiles stored", got, len(profiles))
	}
	return profiles
}

// sameIdentifiers compares two lists of identifiers as sets.
func sameIdentifiers(a, b []Identifier) bool {
	byString := func(x, y Identifier) int { return strings.Compare(x.String(), y.String()) }
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byString)
	slices.SortFunc(b, byString)
	return slices.Equal(a, b)
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEvents = 0
	path := filepath.Join(t.TempDir(), "cartera.db")
	st, err := Open(context.Background(), path, cfg, Options{})
	if err == nil {
		st.Close()
		t.Fatal("Open with max_events 0 succeeded")
	}
	if want := "profiles.max_events: want at least 1, got 0"; err.Error() != want {
		t.Errorf("Open error = %q, want %q", err, want)
	}
}

func TestLookupUnknownKind(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	_, err := ts.Lookup(Identifier{Kind: "loyalty_card", Value: "1"})
	if !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Lookup of an undeclared kind: err %v, want ErrUnknownKind", err)
	}
	ts.notFound(KindProfileID, "short")
	ts.notFound(KindProfileID, "000000000000000000000000")
}

func TestIngestAfterClose(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := ts.Ingest(context.Background(), []*Event{track("m1", "Signed In", user("u1"))})
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Ingest after Close: err %v, want ErrClosed", err)
	}
}

func TestErase(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	p1 := ts.ingest(track("m1", "Product Viewed", anon("a1")))[0].ProfileID
	ts.clock.Advance(time.Minute)
	p2 := ts.ingest(identify("m2", user("u1"), anon("a2"), traits("email", "ana@example.com", "name", "Ana Garcia")))[0].ProfileID
	ts.clock.Advance(time.Minute)
	res := ts.ingest(identify("m3", user("u1"), anon("a1"), at(time.Minute)))[0]
	if res.ProfileID != p1 || !slices.Equal(res.Merged, []string{p2}) {
		t.Fatalf("setup merge: result %+v, want profile %s merging %s", res, p1, p2)
	}

	er, err := ts.Erase(Identifier{Kind: KindEmail, Value: " ANA@example.com"}, false)
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	wantIDs := []Identifier{{KindUserID, "u1"}, {KindAnonymousID, "a1"}, {KindAnonymousID, "a2"}, {KindEmail, "ana@example.com"}}
	if er.ProfileID != p1 || er.Events != 3 || er.DropLater || !slices.Equal(er.MergedFrom, []string{p2}) || !sameIdentifiers(er.Identifiers, wantIDs) {
		t.Errorf("Erasure = %+v, want profile %s, 3 events, merged from %s, identifiers %v", er, p1, p2, wantIDs)
	}
	for _, id := range wantIDs {
		ts.notFound(id.Kind, id.Value)
	}
	ts.notFound(KindProfileID, p1)
	ts.notFound(KindProfileID, p2)
	if ids := ts.messageIDs(p1, 0); len(ids) != 0 {
		t.Errorf("events of the erased profile: %v", ids)
	}
	if got := testutil.ToFloat64(ts.metrics.Erasures); got != 1 {
		t.Errorf("erasures metric = %v, want 1", got)
	}
	if len(checkGraph(t, ts.Store)) != 0 {
		t.Errorf("profiles left after erasing the only person")
	}
	for _, raw := range []string{"ana@example.com", "Ana Garcia"} {
		if where := storedAnywhere(t, ts.Store, raw); len(where) > 0 {
			t.Errorf("%q is still stored after erase, in %v", raw, where)
		}
	}
	if _, err := ts.Erase(Identifier{Kind: KindUserID, Value: "u1"}, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Erase: err %v, want ErrNotFound", err)
	}

	// The same person comes back: a new, empty profile.
	res = ts.ingest(identify("m4", user("u1"), traits("email", "ana@example.com", "plan", "free")))[0]
	if !res.Created || res.ProfileID == p1 || res.ProfileID == p2 {
		t.Fatalf("event after erase: result %+v, want a new profile", res)
	}
	p := ts.lookup(KindEmail, "ana@example.com")
	if p.ID != res.ProfileID || p.EventCount != 1 || len(p.MergedFrom) != 0 {
		t.Errorf("new profile %+v, want %s with 1 event and no merges", p, res.ProfileID)
	}
	if _, ok := p.Traits["name"]; ok {
		t.Errorf("erased trait name came back: %v", p.TraitValues())
	}
	if ids := ts.messageIDs(p.ID, 0); !slices.Equal(ids, []string{"m4"}) {
		t.Errorf("events of the new profile = %v, want [m4]", ids)
	}
	ts.notFound(KindAnonymousID, "a1")
	checkGraph(t, ts.Store)
}

// storedAnywhere lists the buckets whose keys or values contain raw.
func storedAnywhere(t testing.TB, st *Store, raw string) []string {
	t.Helper()
	var where []string
	err := st.DB().View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if bytes.Contains(k, []byte(raw)) || bytes.Contains(v, []byte(raw)) {
					where = append(where, string(name))
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return where
}

func TestEraseDropLater(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(
		identify("m1", user("u1"), anon("a1"), traits("email", "ana@example.com")),
		track("m2", "Order Completed", user("u1")),
	)
	if _, err := ts.Erase(Identifier{Kind: KindUserID, Value: "u1"}, true); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	res := ts.ingest(
		track("m3", "Product Viewed", anon("a1")),
		identify("m4", user("u-new"), traits("email", "Ana@Example.com")),
		track("m5", "Product Viewed", anon("a9")),
	)
	for i := range 2 {
		if !res[i].Dropped || res[i].ProfileID != "" || res[i].Created {
			t.Errorf("event %d with an erased identifier: result %+v, want dropped", i, res[i])
		}
	}
	if res[2].Dropped || !res[2].Created {
		t.Errorf("unrelated event: result %+v, want a new profile", res[2])
	}
	ts.notFound(KindAnonymousID, "a1")
	ts.notFound(KindUserID, "u-new")
	ts.notFound(KindEmail, "ana@example.com")
	if got := testutil.ToFloat64(ts.metrics.Dropped); got != 2 {
		t.Errorf("dropped metric = %v, want 2", got)
	}
	profiles := checkGraph(t, ts.Store)
	if len(profiles) != 1 || profiles[res[2].ProfileID] == nil {
		t.Errorf("profiles after drops: %d, want only %s", len(profiles), res[2].ProfileID)
	}
}

func TestExport(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(track("m1", "Product Viewed", anon("a1"), at(time.Minute)))
	ts.clock.Advance(time.Minute)
	ts.ingest(identify("m2", user("u1"), anon("a2"), traits("email", "ana@example.com"), at(2*time.Minute)))
	ts.clock.Advance(time.Minute)
	ts.ingest(track("m3", "Order Completed", user("u1"), anon("a1"), props("revenue", json.Number("30")), at(3*time.Minute)))

	ex, err := ts.Export(Identifier{Kind: KindEmail, Value: "ana@example.com"})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if ex.Profile == nil || ex.Profile.ID != ts.lookup(KindUserID, "u1").ID {
		t.Fatalf("Export profile %+v, want the profile of u1", ex.Profile)
	}
	var got []string
	for _, e := range ex.Events {
		got = append(got, e.MessageID)
	}
	if !slices.Equal(got, []string{"m3", "m2", "m1"}) || len(ex.Events) != ex.Profile.EventCount {
		t.Errorf("Export events %v (event_count %d), want [m3 m2 m1]", got, ex.Profile.EventCount)
	}
	if v := ex.Events[0].Properties["revenue"]; fmt.Sprint(v) != "30" {
		t.Errorf("exported revenue = %v, want 30", v)
	}
	if _, err := json.Marshal(ex); err != nil {
		t.Errorf("encode export: %v", err)
	}
	if _, err := ts.Export(Identifier{Kind: KindEmail, Value: "nobody@example.com"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Export of nobody: err %v, want ErrNotFound", err)
	}
}

func TestPruneMessages(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DedupeWindow = time.Hour
	ts := openStore(t, cfg)
	ts.ingest(track("m1", "Signed In", user("u1")), track("m2", "Signed In", user("u1")))
	ts.clock.Advance(30 * time.Minute)
	ts.ingest(track("m3", "Signed In", user("u1")))

	ts.clock.Advance(30*time.Minute - time.Second)
	if n, err := ts.PruneMessages(100); err != nil || n != 0 {
		t.Fatalf("prune inside the window: %d, %v; want 0", n, err)
	}
	ts.clock.Advance(2 * time.Second)
	if n, err := ts.PruneMessages(1); err != nil || n != 1 {
		t.Fatalf("prune with max 1: %d, %v; want 1", n, err)
	}
	if n, err := ts.PruneMessages(100); err != nil || n != 1 {
		t.Fatalf("prune the rest: %d, %v; want 1", n, err)
	}
	if ts.seen("m1") || ts.seen("m2") || !ts.seen("m3") {
		t.Errorf("seen after prune: m1 %v, m2 %v, m3 %v; want false, false, true", ts.seen("m1"), ts.seen("m2"), ts.seen("m3"))
	}
	res := ts.ingest(track("m1", "Signed In", user("u1")), track("m3", "Signed In", user("u1")))
	if res[0].Duplicate || !res[1].Duplicate {
		t.Errorf("after prune: m1 duplicate %v, m3 duplicate %v; want false, true", res[0].Duplicate, res[1].Duplicate)
	}
	if p := ts.lookup(KindUserID, "u1"); p.EventCount != 4 {
		t.Errorf("event_count = %d, want 4", p.EventCount)
	}
}

func TestRestart(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(track("m1", "Product Viewed", anon("a1")))
	ts.clock.Advance(time.Minute)
	ts.ingest(
		identify("m2", user("u1"), anon("a2"), traits("email", "ana@example.com", "plan", "pro")),
		identify("m3", user("u1"), anon("a1")),
		identify("m4", user("u2"), traits("email", "bo@example.com")),
	)
	ts.ingest(identify("m5", user("gone"), anon("a-gone")))
	if _, err := ts.Erase(Identifier{Kind: KindUserID, Value: "gone"}, true); err != nil {
		t.Fatal(err)
	}
	before := checkGraph(t, ts.Store)
	ana := ts.lookup(KindUserID, "u1")

	ts.reopen()

	after := checkGraph(t, ts.Store)
	if len(after) != 2 || len(before) != 2 || ts.ProfileCount() != 2 {
		t.Fatalf("profiles before %d, after %d, count %d; want 2", len(before), len(after), ts.ProfileCount())
	}
	for _, id := range []Identifier{{KindUserID, "u1"}, {KindAnonymousID, "a1"}, {KindAnonymousID, "a2"}, {KindEmail, "ana@example.com"}} {
		if p := ts.lookup(id.Kind, id.Value); p.ID != ana.ID {
			t.Errorf("after restart %s is on %s, want %s", id, p.ID, ana.ID)
		}
	}
	for _, m := range ana.MergedFrom {
		if p := ts.lookup(KindProfileID, m); p.ID != ana.ID {
			t.Errorf("after restart merged id %s leads to %s, want %s", m, p.ID, ana.ID)
		}
	}
	if got := ts.lookup(KindUserID, "u1").TraitValues()["plan"]; got != "pro" {
		t.Errorf("after restart plan = %v, want pro", got)
	}
	if ids := ts.messageIDs(ana.ID, 0); !slices.Equal(ids, []string{"m3", "m2", "m1"}) {
		t.Errorf("after restart events = %v, want [m3 m2 m1]", ids)
	}

	res := ts.ingest(
		identify("m2", user("u1"), traits("plan", "free")),
		track("m6", "Signed In", user("u1")),
		track("m7", "Signed In", anon("a-gone")),
	)
	if !res[0].Duplicate {
		t.Errorf("messageId seen before the restart was applied again: %+v", res[0])
	}
	if res[1].ProfileID != ana.ID || res[1].Created {
		t.Errorf("new event of u1 after restart: %+v, want profile %s", res[1], ana.ID)
	}
	if !res[2].Dropped {
		t.Errorf("event with an identifier erased before the restart: %+v, want dropped", res[2])
	}
	if got := ts.lookup(KindUserID, "u1").TraitValues()["plan"]; got != "pro" {
		t.Errorf("duplicate changed plan to %v", got)
	}
	checkGraph(t, ts.Store)
}

// TestConcurrentIngest has 16 goroutines ingest, in random order and in
// batches of random size, the events of people whose identifiers (two
// devices, a user id, an email) become linked only as the events arrive,
// plus retries and kiosks shared by two people. Whatever the order, each
// person ends as exactly one profile and the graph is consistent.
func TestConcurrentIngest(t *testing.T) {
	const (
		people     = 120
		kiosks     = 5 // kiosk k is used by people 2k and 2k+1
		goroutines = 16
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	ts := openStore(t, DefaultConfig())
	var events []*Event
	uniq := 0
	for p := range people {
		u, a1, a2 := fmt.Sprintf("u%d", p), fmt.Sprintf("p%d-phone", p), fmt.Sprintf("p%d-laptop", p)
		email := fmt.Sprintf("person%d@example.com", p)
		m := func(n int) string { return fmt.Sprintf("p%d-m%d", p, n) }
		minute := func(n int) eventOpt { return at(time.Duration(n) * time.Minute) }
		mine := []*Event{
			track(m(1), "Product Viewed", anon(a1), minute(1)),
			newEvent(TypePage, m(2), anon(a1), minute(2)),
			track(m(3), "Product Viewed", anon(a2), minute(3)),
			identify(m(4), anon(a2), traits("email", fmt.Sprintf("  Person%d@Example.COM", p)), minute(4)),
			identify(m(5), user(u), anon(a1), minute(5)),
			identify(m(6), user(u), traits("email", email), minute(6)),
			track(m(7), "Order Completed", user(u), props("revenue", json.Number("10")), minute(7)),
		}
		uniq += len(mine)
		retry := *mine[6] // the SDK retries; the messageId is the same
		mine = append(mine, &retry)
		if p < 2*kiosks {
			mine = append(mine, identify(m(8), user(u), anon(fmt.Sprintf("kiosk%d", p/2)), minute(8)))
			uniq++
		}
		events = append(events, mine...)
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })

	var duplicates, dropped atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		mine := events[g*len(events)/goroutines : (g+1)*len(events)/goroutines]
		sizes := rand.New(rand.NewPCG(seed, uint64(g)+2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(mine) > 0 {
				n := min(1+sizes.IntN(4), len(mine))
				res, err := ts.Ingest(context.Background(), mine[:n])
				if err != nil {
					errs <- err
					return
				}
				for _, r := range res {
					if r.Duplicate {
						duplicates.Add(1)
					}
					if r.Dropped {
						dropped.Add(1)
					}
				}
				mine = mine[n:]
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ingest: %v", err)
	}

	if duplicates.Load() != people || dropped.Load() != 0 {
		t.Errorf("duplicates %d, dropped %d; want %d, 0", duplicates.Load(), dropped.Load(), people)
	}
	profiles := checkGraph(t, ts.Store)
	if len(profiles) != people {
		t.Errorf("%d profiles, want %d people", len(profiles), people)
	}
	total := 0
	for _, p := range profiles {
		total += p.EventCount
	}
	if total != uniq {
		t.Errorf("%d events stored, want %d", total, uniq)
	}

	owners := map[string]int{}
	for p := range people {
		email := fmt.Sprintf("person%d@example.com", p)
		own := ts.lookup(KindUserID, fmt.Sprintf("u%d", p))
		for _, id := range []Identifier{{KindAnonymousID, fmt.Sprintf("p%d-phone", p)}, {KindAnonymousID, fmt.Sprintf("p%d-laptop", p)}, {KindEmail, email}} {
			if got := ts.lookup(id.Kind, id.Value); got.ID != own.ID {
				t.Errorf("person %d: %s is on %s, user id on %s", p, id, got.ID, own.ID)
			}
		}
		if other, dup := owners[own.ID]; dup {
			t.Errorf("people %d and %d share profile %s", other, p, own.ID)
		}
		owners[own.ID] = p
		if got := own.TraitValues()["email"]; got != email {
			t.Errorf("person %d: email trait %v, want %s", p, got, email)
		}
	}
	// A kiosk stays with one of its two people, and the second of them to
	// use it is refused exactly once: as a merge or as an identifier.
	for k := range kiosks {
		p := ts.lookup(KindAnonymousID, fmt.Sprintf("kiosk%d", k))
		if who, ok := owners[p.ID]; !ok || who/2 != k {
			t.Errorf("kiosk%d is on the profile of person %d (found %v)", k, who, ok)
		}
	}
	refused := testutil.ToFloat64(ts.metrics.RefusedMerges.WithLabelValues(KindUserID)) +
		testutil.ToFloat64(ts.metrics.RefusedIDs.WithLabelValues(KindUserID))
	if refused != kiosks {
		t.Errorf("refusals of a second user id: %v, want %d", refused, kiosks)
	}
}

// seen reports whether the store remembers a messageId as applied: its
// expiry entry and the record it points at (on a profile, or global).
func (ts *testStore) seen(messageID string) bool {
	var ok bool
	_ = ts.DB().View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketMsgTime).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if string(k[8:]) != messageID {
				continue
			}
			if len(v) == idLen {
				ok = tx.Bucket(bucketProfiles).Get(messageKey(string(v), messageID)) != nil
			} else {
				ok = tx.Bucket(bucketMessages).Get([]byte(messageID)) != nil
			}
			return nil
		}
		return nil
	})
	return ok
}

// TestDedupeFollowsThePerson: messageIds are remembered on the profile they
// were applied to, so a retry is still a duplicate after that profile was
// merged away, after it was erased, and after a restart; and the old
// global index of earlier versions is still honoured.
func TestDedupeFollowsThePerson(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DedupeWindow = time.Hour
	ts := openStore(t, cfg)
	ts.ingest(track("m1", "Product Viewed", anon("a1")))
	ts.clock.Advance(time.Second)
	ts.ingest(track("m2", "Product Viewed", user("u1")))
	survivor := ts.lookup(KindAnonymousID, "a1").ID // the older profile
	ts.clock.Advance(time.Second)
	res := ts.ingest(identify("m3", user("u1"), anon("a1")))
	if len(res[0].Merged) != 1 {
		t.Fatalf("identify merged %v, want one profile", res[0].Merged)
	}
	checkGraph(t, ts.Store)

	// Retries of both originals, one of them applied to the merged-away
	// profile, and a repeat within one call.
	res = ts.ingest(track("m1", "Product Viewed", anon("a1")), track("m2", "Product Viewed", user("u1")),
		track("m4", "Product Viewed", user("u1")), track("m4", "Product Viewed", user("u1")))
	if !res[0].Duplicate || !res[1].Duplicate || res[2].Duplicate || !res[3].Duplicate {
		t.Errorf("duplicates after the merge: %v %v %v %v; want true true false true", res[0].Duplicate, res[1].Duplicate, res[2].Duplicate, res[3].Duplicate)
	}
	if p := ts.lookup(KindUserID, "u1"); p.ID != survivor || p.EventCount != 4 {
		t.Errorf("u1: profile %s with %d events, want %s with 4", p.ID, p.EventCount, survivor)
	}
	ts.reopen()
	if res := ts.ingest(track("m4", "Product Viewed", anon("a1"))); !res[0].Duplicate {
		t.Error("m4 applied again after a restart")
	}

	// An erasure forgets the person, not that their messages were applied.
	if _, err := ts.Erase(Identifier{Kind: KindUserID, Value: "u1"}, false); err != nil {
		t.Fatal(err)
	}
	checkGraph(t, ts.Store)
	res = ts.ingest(track("m2", "Product Viewed", user("u1")), track("m5", "Product Viewed", user("u1")))
	if !res[0].Duplicate || res[1].Duplicate || !res[1].Created {
		t.Errorf("after the erasure: m2 %+v, m5 %+v; want m2 a duplicate and m5 a new profile", res[0], res[1])
	}

	// A file of an earlier version: messageIds in the global index only.
	err := ts.DB().Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMessages).Put([]byte("old-1"), make([]byte, 8))
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := ts.ingest(track("old-1", "Product Viewed", user("u9"))); !res[0].Duplicate {
		t.Error("a messageId of the global index was applied again")
	}

	// Past the window every entry expires, wherever it lives, and the
	// messageIds may be applied again.
	ts.clock.Advance(2 * time.Hour)
	if n, err := ts.PruneMessages(100); err != nil || n != 5 {
		t.Fatalf("prune = %d, %v; want 5 (m1, m2, m3 and m4 moved to the global index by the erasure, m5 on its profile)", n, err)
	}
	checkGraph(t, ts.Store)
	if res := ts.ingest(track("m5", "Product Viewed", user("u1"))); res[0].Duplicate {
		t.Error("m5 still a duplicate after the window")
	}
}

// TestPagesWritten: the store counts the pages its commits write, so that
// an operator can read the B-tree's write amplification per event.
func TestPagesWritten(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	pages0, bytes0 := ts.PagesWritten()
	ts.ingest(track("m-pages-1", "Product Viewed", user("u-pages")))
	pages1, bytes1 := ts.PagesWritten()
	if pages1 <= pages0 || bytes1 <= bytes0 {
		t.Fatalf("after a commit: pages %d→%d, bytes %d→%d; want both to grow", pages0, pages1, bytes0, bytes1)
	}
	if page := int64(ts.DB().Info().PageSize); bytes1-bytes0 < (pages1-pages0)*page {
		t.Fatalf("%d pages in %d bytes, less than a page (%d bytes) each", pages1-pages0, bytes1-bytes0, page)
	}
}
