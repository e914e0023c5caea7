package journeys

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/profiles"
)

// experimentJourneys are n journeys on ten trigger events with the goal
// Order Completed; with splits, each takes its people through a
// three-armed split, else through a branch of the same shape.
func experimentJourneys(n int, splits bool) map[string]string {
	step := `  - id: pick
    branch:
      - when: profile.computed.orders_count > 100
        next: a
      - else: b
`
	if splits {
		step = `  - id: pick
    split:
      - {name: one, percent: 45, next: a}
      - {name: two, percent: 45, next: b}
      - {name: off, percent: 10, control: true, next: b}
`
	}
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("j%04d.yaml", i)] = fmt.Sprintf(`id: j_%d
trigger:
  event: Event %d
entry:
  reentry: true
goal:
  event: Order Completed
steps:
%s  - id: a
    wait: 1d
  - id: b
    wait: 2d
`, i, i%10, step)
	}
	return files
}

// enterOnce runs the journey engine on one event of each person given,
// each of whom enters entered of the harness's journeys, in one write
// transaction it rolls back, and returns how long the engine took (Event
// and Flush): wall time, and the CPU time of the thread (threadCPU; the
// caller locks it).
func enterOnce(b *testing.B, h *harness, entered int, pids ...string) (wall, cpu time.Duration) {
	ev := &profiles.Event{Type: profiles.TypeTrack, MessageID: "x", UserID: "ana", Event: "Event 3", Timestamp: t0, ReceivedAt: t0, Source: "bench"}
	tx, err := h.store.DB().Begin(true)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	ps := make([]*profiles.Profile, len(pids))
	for i, pid := range pids {
		if ps[i], err = profiles.ReadProfile(tx, pid); err != nil {
			b.Fatal(err)
		}
	}
	start, startCPU := time.Now(), threadCPU()
	r := h.engine.Begin(tx)
	for _, p := range ps {
		if _, err := r.Event(p, ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Flush(); err != nil {
		b.Fatal(err)
	}
	wall, cpu = time.Since(start), threadCPU()-startCPU
	if n := len(r.(*run).actions); n != entered*len(pids) {
		b.Fatalf("%d actions, want %d enters", n, entered*len(pids))
	}
	return wall, cpu
}

// BenchmarkExperimentEvent: the journey engine's work for one event of a
// person in a tenth of 1000 journeys (100 entered), with splits and
// without (a branch in their place): "enter" is the event that starts the
// 100 instances (each split draws and records an assignment; the
// transaction is rolled back after each op, so each op meets every
// counter for the first time), "enter_warm" the same once sixty other
// people entered (every arm's counters exist, as in a running
// experiment), "goal" a goal event (each assignment is read; after the
// first op all are converted). The difference between with and without is
// what experiments cost; "extra_per_split" measures it directly: each op
// enters the person once with branches and once with splits, alternating,
// and reports the difference per journey entered, in wall time (ns/split)
// and in the CPU time of the benchmark's thread (cpu-ns/split: what the
// engine spent, less what a shared machine's other work takes from it;
// GC's background workers run on other threads and are not in it), so
// that the load of a shared machine falls on both sides alike. "batch=50"
// is the same with fifty people's events in one transaction, as a group
// commit under load holds them: the counters are read and written once
// for all fifty. "journeys=100" is extra_per_split in a store of 100
// journeys (10 entered).
func BenchmarkExperimentEvent(b *testing.B) {
	for _, n := range []int{100, 1000} {
		benchmarkExperimentEvent(b, n)
	}
}

func benchmarkExperimentEvent(b *testing.B, journeys int) {
	hs := map[bool]*harness{}
	pids := map[bool]string{}
	for _, splits := range []bool{false, true} {
		hs[splits] = openHarness(b, openPolicy, experimentJourneys(journeys, splits), true)
		pids[splits] = hs[splits].track("ana", "Signed Up", nil)
	}
	entered := journeys / 10
	extra := func(b *testing.B, people map[bool][]string) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var with, without, withCPU, withoutCPU time.Duration
		b.ReportAllocs()
		for b.Loop() {
			w, c := enterOnce(b, hs[false], entered, people[false]...)
			without, withoutCPU = without+w, withoutCPU+c
			w, c = enterOnce(b, hs[true], entered, people[true]...)
			with, withCPU = with+w, withCPU+c
		}
		events := float64(b.N * len(people[true]))
		b.ReportMetric(float64((with-without).Nanoseconds())/(float64(entered)*events), "ns/split")
		b.ReportMetric(float64((withCPU-withoutCPU).Nanoseconds())/(float64(entered)*events), "cpu-ns/split")
		b.ReportMetric(float64(withoutCPU.Nanoseconds())/events, "cpu-ns/branch-event")
	}
	prefix := fmt.Sprintf("journeys=%d", journeys)
	one := map[bool][]string{false: {pids[false]}, true: {pids[true]}}
	b.Run(prefix+"/extra_per_split/enter", func(b *testing.B) { extra(b, one) })
	for _, splits := range []bool{false, true} {
		h, pid := hs[splits], pids[splits]
		name := fmt.Sprintf("%s/splits=%v", prefix, splits)
		enter := func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				enterOnce(b, h, entered, pid)
			}
		}
		if journeys == 1000 {
			b.Run(name+"/enter", enter)
		}
		// Warm: sixty other people enter first, so every arm's counters
		// exist, as they do once an experiment runs; a new person's
		// entry then updates counters rather than inserting them.
		for i := range 60 {
			h.track(fmt.Sprintf("warm-%d", i), "Event 3", nil)
		}
		if journeys == 1000 {
			b.Run(name+"/enter_warm", enter)
		}
	}
	b.Run(prefix+"/extra_per_split/enter_warm", func(b *testing.B) { extra(b, one) })
	batch := map[bool][]string{}
	for _, splits := range []bool{false, true} {
		for i := range 50 {
			batch[splits] = append(batch[splits], hs[splits].track(fmt.Sprintf("batch-%d", i), "Signed Up", nil))
		}
	}
	b.Run(prefix+"/extra_per_split/enter_warm/batch=50", func(b *testing.B) { extra(b, batch) })
	if journeys != 1000 {
		return
	}
	for _, splits := range []bool{false, true} {
		h, pid := hs[splits], pids[splits]
		h.track("ana", "Event 3", nil)
		b.Run(fmt.Sprintf("%s/splits=%v/goal", prefix, splits), func(b *testing.B) {
			ev := &profiles.Event{Type: profiles.TypeTrack, MessageID: "y", UserID: "ana", Event: "Order Completed",
				Properties: map[string]any{"revenue": 10.0}, Timestamp: t0, ReceivedAt: t0, Source: "bench"}
			tx, err := h.store.DB().Begin(true)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = tx.Rollback() }()
			p, err := profiles.ReadProfile(tx, pid)
			if err != nil {
				b.Fatal(err)
			}
			r := h.engine.Begin(tx)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Event(p, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExperimentResults: GET /v1/journeys/{id}'s experiments for a
// split with a million people assigned (synthetic counters, written a key
// each as earlier versions kept them, and folded into the journey's tally
// when the store opens again): the counters are read and each arm's
// posterior drawn.
func BenchmarkExperimentResults(b *testing.B) {
	h := openHarness(b, openPolicy, map[string]string{"cart.yaml": splitJourney}, true)
	err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketExperiments)
		for _, c := range []struct {
			variant        string
			assigned, conv uint64
			revenue        uint64
		}{{"at_once", 450_000, 40_500, 4_050_000_00}, {"later", 450_000, 42_300, 4_300_000_00}, {"control", 100_000, 8_000, 790_000_00}} {
			for what, n := range map[string]uint64{"assigned": c.assigned, "converted": c.conv, "revenue_cents": c.revenue} {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], n)
				if err := bk.Put([]byte("cart\x00reminder_timing\x00"+c.variant+"\x00"+what), v[:]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	h.restart()
	j := h.engine.Set().Journey("cart")
	b.ReportAllocs()
	for b.Loop() {
		rs, err := h.engine.Experiments(j)
		if err != nil || len(rs) != 1 || rs[0].Variants[0].Assigned != 450_000 {
			b.Fatalf("results = %+v, %v", rs, err)
		}
	}
}

// BenchmarkAssign: one split assignment, alone. "new" draws and records
// the arm of people never assigned (a thousand per transaction, flushed,
// then rolled back), "sticky" reads the arm of people already assigned
// (stored: each op is a run of its own). cpu-ns/assignment is the
// benchmark thread's CPU time (threadCPU), less exposed than ns to what
// else a shared machine runs.
func BenchmarkAssign(b *testing.B) {
	h := openHarness(b, openPolicy, map[string]string{"cart.yaml": splitJourney}, true)
	j := h.engine.Set().Journey("cart")
	s := j.Step("timing")
	const people = 1000
	ids := make([]string, people)
	for i := range ids {
		ids[i] = fmt.Sprintf("%024x", i*7919)
	}
	begin := func(b *testing.B) (*bbolt.Tx, *run) {
		tx, err := h.store.DB().Begin(true)
		if err != nil {
			b.Fatal(err)
		}
		r := h.engine.Begin(tx).(*run)
		r.now = t0
		return tx, r
	}
	b.Run("new", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu := threadCPU()
		b.ReportAllocs()
		for b.Loop() {
			tx, r := begin(b)
			for _, id := range ids {
				if _, err := r.assign(id, j, s); err != nil {
					b.Fatal(err)
				}
			}
			if err := r.Flush(); err != nil {
				b.Fatal(err)
			}
			_ = tx.Rollback()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*people), "ns/assignment")
		b.ReportMetric(float64((threadCPU()-cpu).Nanoseconds())/float64(b.N*people), "cpu-ns/assignment")
	})
	b.Run("sticky", func(b *testing.B) {
		tx, r := begin(b)
		defer func() { _ = tx.Rollback() }()
		for _, id := range ids {
			if _, err := r.assign(id, j, s); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.Flush(); err != nil {
			b.Fatal(err)
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu := threadCPU()
		b.ReportAllocs()
		for b.Loop() {
			// A run of its own, as the next transaction would have:
			// each arm is read from the store.
			r := h.engine.Begin(tx).(*run)
			r.now = t0
			for _, id := range ids {
				if _, err := r.assign(id, j, s); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*people), "ns/assignment")
		b.ReportMetric(float64((threadCPU()-cpu).Nanoseconds())/float64(b.N*people), "cpu-ns/assignment")
	})
}
