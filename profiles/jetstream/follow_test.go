package jetstream_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// TestStoreFollowingTheRouterMerges: one store follows the whole stream
// through the router (serve on one node, with the identity index), so it
// plays every partition's part: two people the router made separately,
// then linked by an identify, end as one profile through the merge steps
// in the log (MergeOut, then MergeIn appended back and applied), with
// every event, none recorded as dead; an event routed to the loser from
// a router's cache after the merge is forwarded to the survivor, not made
// a profile of its own.
func TestStoreFollowingTheRouterMerges(t *testing.T) {
	ns := startNATS(t)
	cfg := testConfig(ns.url())
	l := open(t, cfg)
	r := newRouter(t, l, true)
	stale := newRouter(t, open(t, cfg), true) // another node's router, its cache from before the merge
	st := followingStore(t, r)

	var recs [][]byte
	for i := range 3 {
		recs = append(recs, visitorEvent(fmt.Sprintf("m-user-%d", i), "ann", ""), visitorEvent(fmt.Sprintf("m-anon-%d", i), "", "device-1"))
	}
	if _, _, err := r.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	upid, apid := profileOf(t, r, recs[0]), profileOf(t, r, recs[1])
	if upid == apid {
		t.Fatalf("two people with nothing in common got one profile %s", upid)
	}
	if got := profileOf(t, stale, recs[1]); got != apid {
		t.Fatalf("the other router resolves the device to %s, want %s", got, apid)
	}
	user := profiles.Identifier{Kind: profiles.KindUserID, Value: "ann"}
	anon := profiles.Identifier{Kind: profiles.KindAnonymousID, Value: "device-1"}
	why := ""
	waitFor(t, "both people applied", &why, func() bool {
		u, _ := st.Lookup(user)
		a, _ := st.Lookup(anon)
		why = fmt.Sprintf("%+v %+v", u, a)
		return u != nil && a != nil && u.EventCount == 3 && a.EventCount == 3
	})

	if _, last, err := r.Append(t.Context(), [][]byte{visitorEvent("m-identify", "ann", "device-1")}); err != nil {
		t.Fatal(err)
	} else if err := st.WaitApplied(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	survivor, loser := min(upid, apid), max(upid, apid)
	// Routed to the device's profile from a cache of before the merge.
	if _, _, err := stale.Append(t.Context(), [][]byte{visitorEvent("m-after", "", "device-1")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one profile with every event", &why, func() bool {
		u, _ := st.Lookup(user)
		a, _ := st.Lookup(anon)
		why = fmt.Sprintf("%+v / %+v", u, a)
		return u != nil && a != nil && u.ID == a.ID && u.EventCount == 8
	})
	p, err := st.Lookup(user)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != survivor || !slices.Contains(p.MergedFrom, loser) {
		t.Errorf("profile %s merged from %v, want %s merged from %s", p.ID, p.MergedFrom, survivor, loser)
	}
	events, err := st.Events(p.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range events {
		ids = append(ids, e.MessageID)
	}
	slices.Sort(ids)
	want := []string{"m-after", "m-anon-0", "m-anon-1", "m-anon-2", "m-identify", "m-user-0", "m-user-1", "m-user-2"}
	if !slices.Equal(ids, want) {
		t.Errorf("events %v, want %v", ids, want)
	}
	if n := st.ProfileCount(); n != 1 {
		t.Errorf("%d profiles, want 1", n)
	}
	dead, err := st.DeadEvents()
	if err != nil || len(dead) != 0 {
		t.Errorf("dead events %v, %v", dead, err)
	}
	if r.Merges() != 1 {
		t.Errorf("the router started %d merges, want 1", r.Merges())
	}
}

// A batch of many people, each a device's event, then the identify that
// links it to a user, then the user's event, is routed with the people
// resolved concurrently and each person's events in order: every person
// ends as one profile with their three events, no merge needed.
func TestRouterBatchOfPeople(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	r := newRouter(t, l, false)
	st := followingStore(t, r)

	const people = 40
	var recs [][]byte
	for i := range people {
		user, anon := fmt.Sprintf("user-%d", i), fmt.Sprintf("device-%d", i)
		recs = append(recs, visitorEvent("m-"+anon, "", anon), visitorEvent("m-id-"+user, user, anon), visitorEvent("m-"+user, user, ""))
	}
	_, last, err := r.Append(t.Context(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitApplied(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	for i := range people {
		u, err := st.Lookup(profiles.Identifier{Kind: profiles.KindUserID, Value: fmt.Sprintf("user-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		a, err := st.Lookup(profiles.Identifier{Kind: profiles.KindAnonymousID, Value: fmt.Sprintf("device-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if u.ID != a.ID || u.EventCount != 3 || len(u.MergedFrom) != 0 {
			t.Errorf("person %d: user on %s, device on %s, %d events, merged from %v; want one profile, 3 events, no merge", i, u.ID, a.ID, u.EventCount, u.MergedFrom)
		}
	}
	if n := st.ProfileCount(); n != people || r.Merges() != 0 {
		t.Errorf("%d profiles and %d merges, want %d and 0", n, r.Merges(), people)
	}
}

// followingStore is a store that follows the whole log through r, as
// serve's one node does, applying until the test ends.
func followingStore(t *testing.T, r *jetstream.Router) *profiles.Store {
	t.Helper()
	st, err := profiles.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"), profiles.DefaultConfig(), profiles.Options{Now: clocktest.New(t0).Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AttachLog(r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { st.RunApplier(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); _ = st.Close() })
	return st
}
