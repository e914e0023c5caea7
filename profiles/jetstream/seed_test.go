package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// seedSources are the sources of the seed tests: web a client source (a
// public write key), crm a server source.
func seedSources(t testing.TB) *profiles.Sources {
	t.Helper()
	srcs, err := profiles.NewSources([]profiles.SourceConfig{{Name: "web", Trust: profiles.TrustClient}, {Name: "crm", Trust: profiles.TrustServer}})
	if err != nil {
		t.Fatal(err)
	}
	return srcs
}

// personEvent is an event from source about a user id, an anonymous id
// and an email (an identify then), any of them empty.
func personEvent(source, user, anon string, email ...string) *profiles.Event {
	e := &profiles.Event{Type: profiles.TypeTrack, Event: "Viewed", UserID: user, AnonymousID: anon, Source: source,
		MessageID: fmt.Sprintf("m-%s-%s-%s-%v", source, user, anon, email), Timestamp: t0, ReceivedAt: t0}
	if len(email) > 0 {
		e.Type, e.Event, e.Traits = profiles.TypeIdentify, "", map[string]any{"email": email[0]}
	}
	return e
}

// seedStore opens a store of its own (no event log: events are applied as
// they are ingested) with the identity config idcfg and trust.
func seedStore(t testing.TB, idcfg profiles.IdentityConfig, trust profiles.SourceTrust, events ...*profiles.Event) *profiles.Store {
	t.Helper()
	cfg := profiles.DefaultConfig()
	cfg.Identity, cfg.NoSync = idcfg, true
	st, err := profiles.Open(context.Background(), filepath.Join(t.TempDir(), "seed.db"), cfg, profiles.Options{Now: clocktest.New(t0).Now, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, e := range events {
		// One at a time: a batch's events are resolved as one, and the
		// tests want the store's merges as they would come.
		if _, err := st.Ingest(context.Background(), []*profiles.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// seedRouter is a router on its own stream of the server at url (each
// stream has its own index), with the seed tests' sources.
func seedRouter(t *testing.T, url, stream string, idcfg profiles.IdentityConfig) *jetstream.Router {
	t.Helper()
	cfg := testConfig(url)
	cfg.Stream, cfg.Subject = stream, "seed."+strings.ToLower(stream)
	r, err := jetstream.NewRouter(t.Context(), open(t, cfg), jetstream.RouterConfig{Identity: idcfg, Now: clocktest.New(t0).Now, Trust: seedSources(t)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// indexOf is what the identity index of stream holds of people: its
// identifiers, counts and protection marks, key → value.
func indexOf(t *testing.T, url, stream string) map[string]string {
	t.Helper()
	kv, err := clientJS(t, url).KeyValue(t.Context(), stream+"_IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	lister, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k := range lister.Keys() {
		if !strings.HasPrefix(k, "id.") && !strings.HasPrefix(k, "n.") && !strings.HasPrefix(k, "prot.") {
			continue
		}
		ent, err := kv.Get(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = string(ent.Value())
	}
	return out
}

// indexWrites is how many writes the index of stream has taken.
func indexWrites(t *testing.T, url, stream string) uint64 {
	t.Helper()
	s, err := clientJS(t, url).Stream(t.Context(), "KV_"+stream+"_IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// diffIndexes says how two indexes differ ("": not at all).
func diffIndexes(got, want map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok || g != want[k] {
			out = append(out, fmt.Sprintf("%s: %q, want %q", k, g, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s: %q, want none", k, got[k]))
		}
	}
	return strings.Join(out, "; ")
}

// Seeding an index from a store writes what the router wrote while it
// made that store's people: the same identifier keys, counts and
// protection marks. The store follows a router as serve's one node does;
// each person is seen first on a device (web), then signs in from web or
// from the CRM (a server source: protected), some with a second email.
func TestSeedWritesWhatTheRouterWrites(t *testing.T) {
	ns := startNATS(t)
	idcfg := profiles.DefaultIdentityConfig()
	routed := seedRouter(t, ns.url(), "ROUTED", idcfg)
	st := followingStore(t, routed)
	var recs [][]byte
	for i := range 12 {
		user, anon, source := fmt.Sprintf("user-%d", i), fmt.Sprintf("device-%d", i), "web"
		if i%3 == 0 {
			source = "crm"
		}
		recs = append(recs, eventRecord(t, personEvent("web", "", anon)), eventRecord(t, personEvent(source, user, anon, user+"@example.com")))
		if i%2 == 0 {
			recs = append(recs, eventRecord(t, personEvent(source, user, "", user+"@work.example.com")))
		}
	}
	_, last, err := routed.Append(t.Context(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitApplied(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if n := st.ProfileCount(); n != 12 || routed.Merges() != 0 {
		t.Fatalf("%d profiles and %d merges, want 12 and none", n, routed.Merges())
	}
	want := indexOf(t, ns.url(), "ROUTED")

	seeded := seedRouter(t, ns.url(), "SEEDED", idcfg)
	stats, err := seeded.Seed(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Three identifiers a person, a second email for every other one;
	// the CRM signed in four of them.
	if want := (jetstream.SeedStats{Profiles: 12, Linked: 12*3 + 6, Protected: 4}); stats != want {
		t.Errorf("seed: %+v, want %+v", stats, want)
	}
	if diff := diffIndexes(indexOf(t, ns.url(), "SEEDED"), want); diff != "" {
		t.Errorf("the seeded index differs from the routed one: %s", diff)
	}
}

// eventRecord is an event as ingestion appends it.
func eventRecord(t *testing.T, e *profiles.Event) []byte {
	t.Helper()
	v, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// After a store's people are seeded into the index, a router in front of
// the store sends their events to their profiles: no new profile, no
// merge, nothing linked anew, among them the identifiers of a person two
// profiles made (merged in the store) and of a protected person. The
// seeded counts keep the identity limits (a third email past a limit of
// two, a second user id on a device) and the seeded protection keeps an
// unverified page off the protected person. Seeding again writes nothing.
func TestSeededIndexRoutesToExistingProfiles(t *testing.T) {
	ns := startNATS(t)
	idcfg := profiles.DefaultIdentityConfig()
	idcfg.Limits[profiles.KindEmail] = 2
	srcs := seedSources(t)
	st := seedStore(t, idcfg, srcs,
		personEvent("web", "ann", "ann-device", "ann@example.com"),
		personEvent("web", "ann", "", "ann@work.example.com"),
		personEvent("web", "", "bob-device"),
		personEvent("web", "bob", ""),
		personEvent("web", "bob", "bob-device"), // merges the two
		personEvent("crm", "vip", "", "vip@example.com"),
	)
	ids := map[string]profiles.Identifier{
		"ann": {Kind: profiles.KindUserID, Value: "ann"}, "ann-device": {Kind: profiles.KindAnonymousID, Value: "ann-device"},
		"ann@": {Kind: profiles.KindEmail, Value: "ann@example.com"}, "ann@work": {Kind: profiles.KindEmail, Value: "ann@work.example.com"},
		"bob": {Kind: profiles.KindUserID, Value: "bob"}, "bob-device": {Kind: profiles.KindAnonymousID, Value: "bob-device"},
		"vip": {Kind: profiles.KindUserID, Value: "vip"}, "vip@": {Kind: profiles.KindEmail, Value: "vip@example.com"},
	}
	before := map[string]*profiles.Profile{}
	for name, id := range ids {
		p, err := st.Lookup(id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		before[name] = p
	}
	if n := st.ProfileCount(); n != 3 || len(before["bob"].MergedFrom) != 1 {
		t.Fatalf("%d profiles, bob merged from %v: want 3 people, bob's two profiles merged", n, before["bob"].MergedFrom)
	}

	r := seedRouter(t, ns.url(), "CARTERA_EVENTS", idcfg)
	if empty, err := r.Empty(t.Context()); err != nil || !empty {
		t.Fatalf("a new index: empty %v, %v", empty, err)
	}
	stats, err := r.Seed(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jetstream.SeedStats{Profiles: 3, Linked: 8, Protected: 1}); stats != want {
		t.Errorf("seed: %+v, want %+v", stats, want)
	}
	if empty, err := r.Empty(t.Context()); err != nil || empty {
		t.Fatalf("a seeded index: empty %v, %v", empty, err)
	}
	writes := indexWrites(t, ns.url(), "CARTERA_EVENTS")
	again, err := r.Seed(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jetstream.SeedStats{Profiles: 3, Known: 8}); again != want || indexWrites(t, ns.url(), "CARTERA_EVENTS") != writes {
		t.Errorf("seeding again: %+v and %d writes to the index, want %+v and none", again, indexWrites(t, ns.url(), "CARTERA_EVENTS")-writes, want)
	}

	// Each identifier's event, routed and applied by the store.
	if err := st.AttachLog(r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { st.RunApplier(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	var recs [][]byte
	for name, id := range ids {
		e := personEvent("web", "", "")
		e.MessageID = "after-" + name
		switch id.Kind {
		case profiles.KindUserID:
			e.UserID = id.Value
		case profiles.KindAnonymousID:
			e.AnonymousID = id.Value
		case profiles.KindEmail:
			e.Type, e.Event, e.Traits = profiles.TypeIdentify, "", map[string]any{"email": id.Value}
		}
		recs = append(recs, eventRecord(t, e))
	}
	_, last, err := r.Append(t.Context(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitApplied(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	for name, id := range ids {
		p, err := st.Lookup(id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.ID != before[name].ID {
			t.Errorf("%s is on profile %s after its event, want %s", name, p.ID, before[name].ID)
		}
	}
	for _, name := range []string{"ann", "bob", "vip"} {
		p, _ := st.Lookup(ids[name])
		if grew, want := p.EventCount-before[name].EventCount, map[string]int{"ann": 4, "bob": 2, "vip": 2}[name]; grew != want {
			t.Errorf("%s's profile got %d events, want %d", name, grew, want)
		}
	}
	if n, rs := st.ProfileCount(), r.Stats(); n != 3 || rs.Merges != 0 || rs.Linked != 0 {
		t.Errorf("%d profiles, %d merges, %d identifiers linked after the seeded people's events: want 3, none, none", n, rs.Merges, rs.Linked)
	}

	// The limits and the guard, from what was seeded.
	resolve := func(e *profiles.Event) string { return resolveEvent(t, r, e) }
	ann, vip := before["ann"].ID, before["vip"].ID
	if got := resolve(personEvent("web", "ann", "", "ann@third.example.com")); got != ann {
		t.Fatalf("ann's event with a third email went to %s, want %s", got, ann)
	}
	if got := resolve(personEvent("web", "", "", "ann@third.example.com")); got == ann {
		t.Error("a third email was linked to a seeded profile that holds two (limit two)")
	}
	if got := resolve(personEvent("web", "ann-sister", "ann-device")); got != ann {
		t.Fatalf("another user on ann's device went to %s, want %s (the device's)", got, ann)
	}
	if got := resolve(personEvent("web", "ann-sister", "")); got == ann {
		t.Error("a second user id was linked to a seeded profile that holds one")
	}
	if got := resolve(personEvent("web", "", "page-1", "vip@example.com")); got == vip {
		t.Error("an unverified page's claim of the seeded protected person's email went to them")
	}
	if got := resolve(personEvent("web", "", "page-2", "ann@example.com")); got != ann {
		t.Errorf("an unverified page with ann's email (web only: not protected) went to %s, want %s", got, ann)
	}
	if r.Merges() != 0 {
		t.Errorf("%d merges", r.Merges())
	}
}

// An identifier that leads to another profile in the index than the
// store's is a conflict: Seed stops, naming its kind and both profiles,
// never the identifier.
func TestSeedConflict(t *testing.T) {
	ns := startNATS(t)
	idcfg := profiles.DefaultIdentityConfig()
	r := seedRouter(t, ns.url(), "CARTERA_EVENTS", idcfg)
	first := seedStore(t, idcfg, nil, personEvent("web", "someone-both-stores-know", "a-device"))
	if _, err := r.Seed(t.Context(), first, nil); err != nil {
		t.Fatal(err)
	}
	other := seedStore(t, idcfg, nil, personEvent("web", "someone-both-stores-know", ""))
	_, err := r.Seed(t.Context(), other, nil)
	p1, _ := first.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "someone-both-stores-know"})
	p2, _ := other.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: "someone-both-stores-know"})
	var conflict *jetstream.SeedConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("seeding a store whose person the index gives another profile: %v, want a SeedConflictError", err)
	}
	if want := (jetstream.SeedConflictError{Kind: profiles.KindUserID, Profile: p2.ID, Indexed: p1.ID}); *conflict != want {
		t.Errorf("conflict %+v, want %+v", *conflict, want)
	}
	if msg := err.Error(); strings.Contains(msg, "someone") || !strings.Contains(msg, p1.ID) || !strings.Contains(msg, p2.ID) {
		t.Errorf("the conflict says %q: want both profile ids and not the identifier", msg)
	}
}

// cancelAfter is a store whose lookups end a context after the n-th: a
// seed stopped half-way.
type cancelAfter struct {
	jetstream.People
	n      int64
	seen   atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Lookup(id profiles.Identifier) (*profiles.Profile, error) {
	if c.seen.Add(1) == c.n {
		c.cancel()
	}
	return c.People.Lookup(id)
}

// A seed stopped half-way leaves an index Empty reports as empty (serve
// seeds it again rather than trusting it); the next seed goes on after
// the last batch it recorded and leaves the index as one seed in one go
// does.
func TestSeedResumesAfterInterruption(t *testing.T) {
	ns := startNATS(t)
	idcfg := profiles.DefaultIdentityConfig()
	const people = 1_200 // more than two of Seed's batches
	var events []*profiles.Event
	for i := range people {
		source := "web"
		if i%5 == 0 {
			source = "crm"
		}
		events = append(events, personEvent(source, fmt.Sprintf("user-%d", i), fmt.Sprintf("device-%d", i), fmt.Sprintf("user-%d@example.com", i)))
	}
	st := seedStore(t, idcfg, seedSources(t))
	if _, err := st.Ingest(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	if n := st.ProfileCount(); n != people {
		t.Fatalf("%d profiles, want %d", n, people)
	}

	r := seedRouter(t, ns.url(), "CARTERA_EVENTS", idcfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stopped, err := r.Seed(ctx, &cancelAfter{People: st, n: 700, cancel: cancel}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a seed stopped half-way: %v, want context.Canceled", err)
	}
	if stopped.Profiles < 500 || stopped.Profiles >= people {
		t.Fatalf("the stopped seed wrote %d profiles, want at least its first batch of 500 and not all", stopped.Profiles)
	}
	if empty, err := r.Empty(t.Context()); err != nil || !empty {
		t.Fatalf("an index whose seed stopped half-way: empty %v, %v; want empty", empty, err)
	}
	// Another router (a restart) goes on.
	resumed, err := seedRouter(t, ns.url(), "CARTERA_EVENTS", idcfg).Seed(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.From == "" || resumed.Profiles != people-500 || resumed.Linked+resumed.Known != 3*(people-500) {
		t.Errorf("the resumed seed: %+v, want it to start after the first batch and read the %d profiles after it", resumed, people-500)
	}
	if empty, err := r.Empty(t.Context()); err != nil || empty {
		t.Fatalf("the index once the seed finished: empty %v, %v", empty, err)
	}

	straight := seedRouter(t, ns.url(), "STRAIGHT", idcfg)
	if _, err := straight.Seed(t.Context(), st, nil); err != nil {
		t.Fatal(err)
	}
	if diff := diffIndexes(indexOf(t, ns.url(), "CARTERA_EVENTS"), indexOf(t, ns.url(), "STRAIGHT")); diff != "" {
		t.Errorf("the index of a seed stopped and resumed differs from one seeded in one go: %s", diff)
	}
}

// The index's seed key is read and checked: one that is not a seed's
// progress stops Empty and Seed.
func TestSeedKeyChecked(t *testing.T) {
	ns := startNATS(t)
	r := seedRouter(t, ns.url(), "CARTERA_EVENTS", profiles.DefaultIdentityConfig())
	kv, err := clientJS(t, ns.url()).KeyValue(t.Context(), "CARTERA_EVENTS_IDENTITY")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "seed", []byte("half")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Empty(t.Context()); err == nil || !strings.Contains(err.Error(), `"half"`) {
		t.Errorf("Empty with a seed key of %q: %v", "half", err)
	}
	st := seedStore(t, profiles.DefaultIdentityConfig(), nil, personEvent("web", "u", ""))
	if _, err := r.Seed(t.Context(), st, nil); err == nil {
		t.Error("Seed with a seed key that is not a seed's progress: no error")
	}
}
