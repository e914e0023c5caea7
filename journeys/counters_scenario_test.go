package journeys

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"cartera/profiles"
)

// writeCountersStore makes the testdata of TestCountersUpgrade: run with
// -counters-store=testdata/counters-v1 at a commit of the layout to keep
// (testdata/counters-v1 was made at 2e8e217, a key per counter), it runs
// countersScenario and writes the store (.db.gz) and what the engine read
// from it then (.json).
var writeCountersStore = flag.String("counters-store", "", "write the store of countersScenario and its counters to this path (without extension)")

// countersPolicy: consent for email, quiet hours, a cap, and a holdout,
// so that the counters include suppressions by reason and a holdout.
const countersPolicy = historyPolicy + "  holdout: {percent: 20, name: global}\n"

// countersFiles: a marketing journey with a split and a goal, and one with
// a branch, a wait_for and sends.
var countersFiles = map[string]string{
	"cart.yaml":   strings.Replace(splitJourney, "id: cart\n", "id: cart\ncategory: marketing\n", 1),
	"routed.yaml": routedJourney,
}

// countersJourneys are the journeys of countersFiles.
var countersJourneys = []string{"cart", "routed"}

// countersEnd is when countersScenario ends.
var countersEnd = t0.Add(5 * time.Hour)

// countersScenario: forty people over five hours: split arms, the
// holdout, conversions with revenue, merges that take an assignment out
// of the counts, sends and suppressions, waits and their timeouts, and
// some still waiting at the end.
func countersScenario(h *harness) {
	h.t.Helper()
	for i := range 40 {
		who := fmt.Sprintf("p%02d", i)
		traits := map[string]any{"vip": i%7 == 0}
		if i%3 != 0 {
			traits["consent"] = map[string]any{"email": true}
		}
		h.identify(who, traits)
		h.track(who, "Product Added", nil)
		if i%4 == 0 {
			h.track(who, "Checkout Started", nil)
		}
		if i%10 == 9 {
			h.clock.Advance(time.Hour)
		}
	}
	h.fireUntil(t0.Add(4 * time.Hour))
	for i := range 40 {
		if i%3 == 1 {
			h.track(fmt.Sprintf("p%02d", i), "Order Completed", map[string]any{"revenue": 12.5 + float64(i)})
		}
	}
	// Anonymous visitors who enter, then turn out to be known people:
	// their assignments lose to the survivors' (or move to them).
	for i := range 6 {
		anon := fmt.Sprintf("anon-%d", i)
		h.ingest(&profiles.Event{Type: profiles.TypeTrack, AnonymousID: anon, Event: "Product Added"})
		h.ingest(&profiles.Event{Type: profiles.TypeIdentify, UserID: fmt.Sprintf("p%02d", 5*i), AnonymousID: anon})
	}
	h.fireUntil(countersEnd)
	// And some are waiting at the end.
	for i := 10; i < 16; i++ {
		h.track(fmt.Sprintf("p%02d", i), "Product Added", nil)
	}
}

// countersRead is what the engine reads of the counters.
type countersRead struct {
	Counts      map[string]map[string]StepCounts `json:"counts"`
	Period      map[string]map[string]StepCounts `json:"period"`
	Hours       map[string]map[string]StepCounts `json:"hours"` // t0's hour, then the next
	Experiments map[string][]ExperimentResult    `json:"experiments"`
}

func readCounters(h *harness) countersRead {
	h.t.Helper()
	out := countersRead{map[string]map[string]StepCounts{}, map[string]map[string]StepCounts{}, map[string]map[string]StepCounts{}, map[string][]ExperimentResult{}}
	for _, id := range countersJourneys {
		var err error
		if out.Counts[id], err = h.engine.Counts(id); err != nil {
			h.t.Fatal(err)
		}
		if out.Period[id], err = h.engine.Period(id, t0.Add(-24*time.Hour), countersEnd.Add(24*time.Hour)); err != nil {
			h.t.Fatal(err)
		}
		if out.Hours[id], err = h.engine.Period(id, t0.Add(time.Hour), t0.Add(2*time.Hour)); err != nil {
			h.t.Fatal(err)
		}
		if out.Experiments[id], err = h.engine.Experiments(h.engine.Set().Journey(id)); err != nil {
			h.t.Fatal(err)
		}
	}
	return out
}

func TestWriteCountersStore(t *testing.T) {
	if *writeCountersStore == "" {
		t.Skip("writes testdata with -counters-store")
	}
	h := openHarness(t, countersPolicy, countersFiles, true)
	countersScenario(h)
	read, err := json.MarshalIndent(readCounters(h), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	h.store = nil
	db, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(db); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*writeCountersStore+".db.gz", gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*writeCountersStore+".json", append(read, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
