package journeys

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/internal/codec"
	"cartera/profiles"
)

// expSidecars lists the names of a profile's experiment sidecars.
func (h *harness) expSidecars(pid string) []string {
	h.t.Helper()
	var names []string
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		return sc.Scan(pid, sidecarExpTag, func(name string, _ []byte) error {
			names = append(names, name)
			return nil
		})
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return names
}

// asUpgraded makes the store look as an earlier version left it: without
// the mark that its assignments are all records (an earlier version never
// wrote it), then restarts the engine on it.
func (h *harness) asUpgraded() {
	h.t.Helper()
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketExperiments).Delete(expLayoutKey)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.restart()
	err = h.store.DB().View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketExperiments).Get(expLayoutKey) != nil {
			h.t.Error("a store with experiment counters and no mark was marked as all records on open")
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// twoSplits is the cart split and a second journey with a split on the
// same trigger.
const twoSplits = `
id: promo
trigger:
  event: Product Added
entry:
  reentry: true
goal:
  event: Order Completed
steps:
  - id: offer
    split:
      - {name: ten_off, percent: 50, next: idle}
      - {name: free_ship, percent: 50, next: idle}
  - id: idle
    wait: 1h
`

// TestAssignmentsOneRecord: all of a person's assignments, in every
// journey, are one record beside the profile; converting and re-entering
// rewrite it, and the profile API reads it.
func TestAssignmentsOneRecord(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney, "promo.yaml": twoSplits})
	pid := h.track("ana", "Product Added", nil)
	if got := h.expSidecars(pid); !slices.Equal(got, []string{sidecarExpRecord}) {
		t.Fatalf("experiment sidecars = %q, want the one record", got)
	}
	// A new store is marked as holding records only: runs read the
	// record alone, without looking for the old layout.
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketExperiments).Get(expLayoutKey) == nil {
			t.Error("a new store is not marked as holding records only")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.engine.Assignments(pid)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cart/reminder_timing": pick(h.engine.Set().Journey("cart").Step("timing").Variants, roll(pid, "cart", "reminder_timing")).Name,
		"promo/offer":          pick(h.engine.Set().Journey("promo").Step("offer").Variants, roll(pid, "promo", "offer")).Name,
	}
	if len(as) != 2 {
		t.Fatalf("assignments = %+v, want two", as)
	}
	for _, a := range as {
		if w := want[a.Journey+"/"+a.Experiment]; a.Variant != w || !a.AssignedAt.Equal(t0) || a.Converted {
			t.Errorf("assignment %+v, want variant %q at %v, not converted", a, w, t0)
		}
	}
	// The history says which arm, in the words made once at parse.
	arms := map[string]string{"at_once": "arm at_once (45%) of experiment reminder_timing → remind",
		"later": "arm later (45%) of experiment reminder_timing → idle", "control": "arm control (10%) of experiment reminder_timing, the control: gets nothing → the end"}
	if e := find(h.history(pid), DecisionSplit, "timing"); e == nil || e.Why != arms[want["cart/reminder_timing"]] {
		t.Errorf("history of the split = %+v, want %q", e, arms[want["cart/reminder_timing"]])
	}
	h.track("ana", "Order Completed", map[string]any{"revenue": 12.5})
	h.clock.Advance(time.Minute)
	h.track("ana", "Product Added", nil)
	as, err = h.engine.Assignments(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if w := want[a.Journey+"/"+a.Experiment]; a.Variant != w || !a.Converted || !a.AssignedAt.Equal(t0) {
			t.Errorf("after the purchase and a re-entry: %+v, want %q converted, assigned at %v", a, w, t0)
		}
	}
	for journey, exp := range map[string]string{"cart": "reminder_timing", "promo": "offer"} {
		res := h.results(journey)[exp]
		got := arm(res, want[journey+"/"+exp])
		if got.Assigned != 1 || got.Converted != 1 || got.Revenue != 12.5 {
			t.Errorf("%s results %+v, want one person converted with 12.50", journey, got)
		}
	}
	if got := h.expSidecars(pid); !slices.Equal(got, []string{sidecarExpRecord}) {
		t.Errorf("experiment sidecars = %q, want the one record", got)
	}
}

// oldAssignment encodes an assignment as the layout before the record
// did: one sidecar per assignment.
func oldAssignment(variant string, at time.Time, converted bool, cents int64) []byte {
	w := &codec.Writer{B: []byte{codec.Format1}}
	w.String(variant)
	w.Time(at)
	w.Bool(converted)
	w.Varint(cents)
	return w.B
}

// TestAssignmentsOldLayout: a store written before the record (one
// sidecar per assignment and per ledger entry, as the code of dac2e17
// wrote them, and without the layout mark) keeps its assignments: the arm
// in force is read, not drawn
// again, across re-entries and restarts, and is not counted twice; the
// ledger shows; the first write replaces the old sidecars with the record.
func TestAssignmentsOldLayout(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney})
	variants := h.engine.Set().Journey("cart").Step("timing").Variants
	// People whose stored arm is not the one their hash would draw: only
	// reading it puts them there.
	type person struct{ who, pid, arm string }
	var people []person
	for i := 0; len(people) < 3; i++ {
		who := fmt.Sprintf("old-%d", i)
		pid := h.track(who, "Signed Up", nil)
		drawn := pick(variants, roll(pid, "cart", "reminder_timing")).Name
		stored := "at_once"
		if drawn == stored {
			stored = "later"
		}
		people = append(people, person{who, pid, stored})
	}
	const loser = "0123456789abcdef01234567"
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		counts := tx.Bucket(bucketExperiments)
		for i, p := range people {
			converted := i == 0
			if err := sc.Put(p.pid, "x\x00cart\x00reminder_timing", oldAssignment(p.arm, t0, converted, 700)); err != nil {
				return err
			}
			key := []byte("cart\x00reminder_timing\x00" + p.arm + "\x00assigned")
			n := uint64(0)
			if v := counts.Get(key); v != nil {
				n = binary.BigEndian.Uint64(v)
			}
			if err := counts.Put(key, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
				return err
			}
		}
		return sc.Put(people[0].pid, "xm\x00cart\x00reminder_timing\x00"+loser, oldAssignment("control", t0.Add(-time.Hour), false, 0))
	})
	if err != nil {
		t.Fatal(err)
	}
	h.asUpgraded()
	before := h.results("cart")["reminder_timing"]
	check := func(when string) {
		t.Helper()
		for _, p := range people {
			if v := h.variantOf(p.pid); v != p.arm {
				t.Errorf("%s: %s is in %q, want the stored %q", when, p.who, v, p.arm)
			}
		}
		as, err := h.engine.Assignments(people[0].pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 2 || !as[0].Converted || as[1].MergedFrom != loser || as[1].Variant != "control" {
			t.Errorf("%s: assignments %+v, want the converted arm and the ledger entry", when, as)
		}
		after := h.results("cart")["reminder_timing"]
		for _, b := range before.Variants {
			if a := arm(after, b.Name); a.Assigned != b.Assigned || a.Converted != b.Converted {
				t.Errorf("%s: %s assigned %d converted %d, want as before: %d %d", when, b.Name, a.Assigned, a.Converted, b.Assigned, b.Converted)
			}
		}
	}
	check("read as stored")
	for _, p := range people {
		if got := h.expSidecars(p.pid); len(got) == 0 || got[0] != "x\x00cart\x00reminder_timing" {
			t.Fatalf("%s: sidecars %q, want the old layout still (nothing written yet)", p.who, got)
		}
	}
	h.restart()
	for _, p := range people {
		h.track(p.who, "Product Added", nil)
	}
	h.fireUntil(t0.Add(time.Hour))
	for _, p := range people {
		exits := h.actions(ActExit, p.pid)
		if len(exits) != 1 || dm(exits[0])["variant"] != p.arm {
			t.Errorf("%s: exits %s, want one in %s", p.who, describe(exits), p.arm)
		}
		if got := h.expSidecars(p.pid); !slices.Equal(got, []string{sidecarExpRecord}) {
			t.Errorf("%s: sidecars %q after a write, want the record alone", p.who, got)
		}
	}
	check("after a re-entry")
	h.restart()
	check("after a restart")
}

// TestAssignmentsMergeOldLayout: a merge between a profile of the old
// layout and one of the record keeps the survivor's arm and the other in
// the ledger, in one record, and removes the merged-away profile's.
func TestAssignmentsMergeOldLayout(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney})
	known := h.track("ana", "Product Added", nil)
	knownArm := h.variantOf(known)
	other := "at_once"
	if knownArm == other {
		other = "later"
	}
	anon := h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: "anon-1", Event: "Signed Up"}).ProfileID
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		sc, err := profiles.SidecarsIn(tx)
		if err != nil {
			return err
		}
		if err := sc.Put(anon, "x\x00cart\x00reminder_timing", oldAssignment(other, t0, false, 0)); err != nil {
			return err
		}
		return tx.Bucket(bucketExperiments).Put([]byte("cart\x00reminder_timing\x00"+other+"\x00assigned"), binary.BigEndian.AppendUint64(nil, 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	h.asUpgraded()
	h.clock.Advance(time.Minute)
	res := h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: "ana", AnonymousID: "anon-1"})
	if len(res.Merged) != 1 {
		t.Fatalf("merge result = %+v", res)
	}
	survivor, loser := res.ProfileID, res.Merged[0]
	wantArm, lostArm := knownArm, other
	if survivor == anon {
		wantArm, lostArm = other, knownArm
	}
	as, err := h.engine.Assignments(survivor)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Variant != wantArm || as[0].MergedFrom != "" || as[1].Variant != lostArm || as[1].MergedFrom != loser {
		t.Errorf("survivor's assignments %+v, want %s in force and %s's %s in the ledger", as, wantArm, loser, lostArm)
	}
	if got := h.expSidecars(survivor); !slices.Equal(got, []string{sidecarExpRecord}) {
		t.Errorf("survivor's sidecars %q, want the record alone", got)
	}
	if got := h.expSidecars(loser); len(got) != 0 {
		t.Errorf("merged-away profile's sidecars %q, want none", got)
	}
	r := h.results("cart")["reminder_timing"]
	total := int64(0)
	for _, v := range r.Variants {
		total += v.Assigned
	}
	if total != 1 || arm(r, wantArm).Assigned != 1 {
		t.Errorf("results %+v, want the one person in %s", r.Variants, wantArm)
	}
}

// TestAssignmentsErased: erasing a person removes their record.
func TestAssignmentsErased(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney, "promo.yaml": twoSplits})
	pid := h.track("ana", "Product Added", nil)
	if len(h.expSidecars(pid)) != 1 {
		t.Fatalf("no record before the erase")
	}
	h.clock.Advance(time.Minute)
	if _, err := h.store.Erase(profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"}, false); err != nil {
		t.Fatal(err)
	}
	if got := h.expSidecars(pid); len(got) != 0 {
		t.Errorf("after the erase: %q", got)
	}
	if as, err := h.engine.Assignments(pid); err != nil || len(as) != 0 {
		t.Errorf("assignments after the erase: %+v, %v", as, err)
	}
}

// TestExpRecordCodec: a record reads back as written; one cut short or
// out of order is refused.
func TestExpRecordCodec(t *testing.T) {
	x := newExpRecord()
	for _, e := range []expEntry{
		{journey: "b", experiment: "e", assignment: assignment{Variant: "one", At: t0, Converted: true, RevenueCents: -3}},
		{journey: "a", experiment: "@global", assignment: assignment{Variant: HoldoutVariant, At: t0.Add(time.Hour)}},
		{journey: "b", experiment: "e", mergedFrom: "p2", assignment: assignment{Variant: "two", At: t0}},
	} {
		if !x.add(e) {
			t.Fatalf("add %+v: refused", e)
		}
	}
	if x.add(expEntry{journey: "b", experiment: "e", assignment: assignment{Variant: "other"}}) {
		t.Error("a second arm in force for b/e was added")
	}
	v := x.encode(nil)
	got, err := decodeExpRecord(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []expEntry
	for _, e := range x.list {
		want = append(want, *e)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	if got[0].journey != "a" || got[1].mergedFrom != "" || got[2].mergedFrom != "p2" {
		t.Errorf("order = %+v", got)
	}
	for n := 1; n < len(v); n++ {
		if _, err := decodeExpRecord(v[:n], nil); err == nil {
			t.Errorf("a record cut to %d bytes decoded", n)
		}
	}
	if _, err := decodeExpRecord([]byte("{}"), nil); err == nil {
		t.Error("a record of another format decoded")
	}
	swapped := &expRecord{list: []*expEntry{&got[1], &got[0]}}
	if _, err := decodeExpRecord(swapped.encode(nil), nil); err == nil || !strings.Contains(err.Error(), "order") {
		t.Errorf("a record out of order decoded: %v", err)
	}
}

// TestAssignmentPlacedAtOnce: a person's first assignment puts the
// record in the store at once, so that the flush replaces a value rather
// than inserting a key among the transaction's other records; the flush
// writes every assignment of the run.
func TestAssignmentPlacedAtOnce(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney, "promo.yaml": twoSplits})
	pid := h.track("ana", "Signed Up", nil)
	tx, err := h.store.DB().Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	r := h.engine.Begin(tx).(*run)
	r.now = t0
	sc, err := profiles.SidecarsIn(tx)
	if err != nil {
		t.Fatal(err)
	}
	set := h.engine.Set()
	if _, err := r.assign(pid, set.Journey("cart"), set.Journey("cart").Step("timing")); err != nil {
		t.Fatal(err)
	}
	if got, err := decodeExpRecord(sc.Get(pid, sidecarExpRecord), nil); err != nil || len(got) != 1 || got[0].journey != "cart" {
		t.Fatalf("after the first assignment the record is %+v, %v; want it put at once", got, err)
	}
	if _, err := r.assign(pid, set.Journey("promo"), set.Journey("promo").Step("offer")); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := decodeExpRecord(sc.Get(pid, sidecarExpRecord), nil)
	if err != nil || len(got) != 2 || got[0].journey != "cart" || got[1].journey != "promo" {
		t.Errorf("record after the flush = %+v, %v; want both assignments", got, err)
	}
}
