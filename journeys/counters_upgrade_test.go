package journeys

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestCountersUpgrade: a store written with a key per counter (by
// 2e8e217, testdata/counters-v1.db.gz) opens with every counter folded
// into the journeys' tallies: counts, hourly counts and experiment results
// read as that version read them (counters-v1.json), the old buckets are
// gone, and counting goes on from the folded values, across a restart.
// "pages of 7" folds 7 keys per transaction, as New does 20,000: the
// counters of a journey (and of an hour) are then spread over several.
func TestCountersUpgrade(t *testing.T) {
	for _, page := range []int{migratePage, 7} {
		t.Run(fmt.Sprintf("pages of %d", page), func(t *testing.T) { testCountersUpgrade(t, page) })
	}
}

func testCountersUpgrade(t *testing.T, page int) {
	raw, err := os.ReadFile("testdata/counters-v1.db.gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	db, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var want countersRead
	if b, err := os.ReadFile("testdata/counters-v1.json"); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	// The file is what it says: counters of every kind, a key each.
	if want.Counts["cart"][""]["holdout"] == 0 || want.Counts["routed"]["wait_checkout"]["waiting"] == 0 ||
		want.Period["routed"]["nudge"]["suppressed:consent: no email consent"] == 0 || len(want.Experiments["cart"]) != 2 ||
		want.Experiments["cart"][0].Variants[0].Converted == 0 || want.Hours["cart"]["timing"]["variant:later"] == 0 {
		t.Fatalf("testdata lacks the counters it is for: %+v", want)
	}
	h := openHarness(t, countersPolicy, countersFiles, true)
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	h.store = nil
	if err := os.WriteFile(h.path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	oldKeys := countOldKeys(t, h.path)
	if oldKeys < 100 {
		t.Fatalf("testdata has %d counter keys of the old layout", oldKeys)
	}
	if page != migratePage {
		db, err := bbolt.Open(h.path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := migrateCounters(db, slog.New(slog.DiscardHandler), page); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	h.clock.Set(countersEnd)
	h.open()
	got := readCounters(h)
	same(t, "after the upgrade", got, want)
	err = h.store.DB().View(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketOldCounts, bucketOldHourly} {
			if tx.Bucket(b) != nil {
				t.Errorf("bucket %s still there", b)
			}
		}
		k, _ := tx.Bucket(bucketExperiments).Cursor().Seek([]byte{expMark})
		if k != nil {
			t.Errorf("journey_experiments still holds %q", k)
		}
		if tx.Bucket(bucketExperiments).Get(expLayoutKey) == nil {
			t.Error("the assignments' layout mark is gone")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Counting goes on from there: four people who are not waiting enter
	// both journeys again (those the holdout keeps out do not), an hour
	// after the scenario.
	h.clock.Set(countersEnd.Add(time.Hour))
	for _, who := range []string{"p01", "p02", "p03", "p04"} {
		h.track(who, "Product Added", nil)
	}
	entered := map[string]int64{}
	for _, a := range h.actions(ActEnter, "") {
		entered[a.Journey]++
	}
	if entered["cart"] == 0 || entered["routed"] == 0 {
		t.Fatalf("entered after the upgrade: %v", entered)
	}
	h.restart()
	after := readCounters(h)
	for _, c := range []struct{ journey, step, what string }{{"cart", "", "entered"}, {"cart", "timing", "entered"}, {"routed", "route", "entered"}} {
		if a, b := after.Counts[c.journey][c.step][c.what], want.Counts[c.journey][c.step][c.what]; a != b+entered[c.journey] {
			t.Errorf("%s %s %s: %d after %d more entries, was %d", c.journey, c.step, c.what, a, entered[c.journey], b)
		}
		if a, b := after.Period[c.journey][c.step][c.what], want.Period[c.journey][c.step][c.what]; a != b+entered[c.journey] {
			t.Errorf("%s %s %s over the period: %d after %d more entries, was %d", c.journey, c.step, c.what, a, entered[c.journey], b)
		}
	}
	assigned := int64(0)
	for i, v := range after.Experiments["cart"][0].Variants {
		assigned += v.Assigned - want.Experiments["cart"][0].Variants[i].Assigned
	}
	if assigned != 0 {
		t.Errorf("%d more assigned: the people entering again were assigned before the upgrade", assigned)
	}
	same(t, "earlier hours after more entries", after.Hours, want.Hours)
	same(t, "the holdout", after.Counts["cart"][""]["holdout"], want.Counts["cart"][""]["holdout"])
}

// countOldKeys counts the keys of the counter buckets of the layout
// before the tallies in the store file at path.
func countOldKeys(t *testing.T, path string) int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketOldCounts, bucketOldHourly, bucketExperiments} {
			if bk := tx.Bucket(b); bk != nil {
				n += bk.Stats().KeyN
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// same fails the test if got and want differ as JSON.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// TestCountersLayoutMark: a store that may hold assignments of the layout
// before the record (no mark) keeps no mark once its experiment counters
// are in the journeys' tallies: that journey_experiments is then empty
// does not mean that no experiment was ever counted.
func TestCountersLayoutMark(t *testing.T) {
	h := openHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney}, true)
	h.track("ana", "Product Added", nil)
	h.asUpgraded() // no mark, and asserts that the restart set none
	h.restart()
	err := h.store.DB().View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketExperiments).Get(expLayoutKey) != nil {
			t.Error("marked as all records on the second open")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCountersDamaged: a tally that does not decode makes the counts API
// say so, and the journeys go on: the next entry counts on from the
// entries read before the damage (here none).
func TestCountersDamaged(t *testing.T) {
	h := openHarness(t, openPolicy, map[string]string{"cart.yaml": splitJourney}, true)
	h.track("ana", "Product Added", nil)
	if n := h.count("cart", "", "entered"); n != 1 {
		t.Fatalf("entered = %d", n)
	}
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCounters).Put([]byte("cart"), []byte{1, 0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Counts("cart"); err == nil || !strings.Contains(err.Error(), "read counters of cart") {
		t.Errorf("Counts of a damaged tally: %v", err)
	}
	h.clock.Advance(time.Minute)
	h.track("bea", "Product Added", nil)
	if got := len(h.actions(ActEnter, "")); got != 2 {
		t.Fatalf("%d entries, want 2: the damaged counters stopped the journey", got)
	}
	if n := h.count("cart", "", "entered"); n != 1 {
		t.Errorf("entered after the damage = %d, want 1 (counted on from nothing)", n)
	}
	p, err := h.engine.Period("cart", t0, t0)
	if err != nil || p[""]["entered"] != 2 {
		t.Errorf("the hour's entered = %v, %v; want 2 (its tally is whole)", p[""], err)
	}
}
