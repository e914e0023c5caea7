package journeys

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"

	"cartera/profiles"
)

// benchEvents are what the benchmark shoppers do, in proportion.
var benchEvents = []string{"Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Product Added", "Email Opened", "Order Completed", "Signed Up"}

// benchJourneys makes n journeys of the shapes the examples use: triggers
// on the shop's events (some with a condition on the event), exit on a
// purchase, waits, wait_fors, branches and sends. Reentry is allowed after
// an hour, so instances keep starting and ending.
func benchJourneys(n int) map[string]string {
	triggers := []string{"Product Viewed", "Product Added", "Signed Up", "Email Opened", "Order Completed", "Page Viewed", "Product Removed", "Checkout Started", "Coupon Applied", "Review Written"}
	files := map[string]string{}
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "id: bench_%d\npriority: %d\ntrigger:\n  event: %s\n", i, i%5, triggers[i%len(triggers)])
		if i%3 == 1 {
			fmt.Fprintf(&b, "  when: has(event.properties.price) && event.properties.price > %d.0\n", 10*(i%7))
		}
		b.WriteString("entry:\n  reentry: true\n  cooldown: 1h\n")
		if triggers[i%len(triggers)] != "Order Completed" {
			b.WriteString("exit_when:\n  - event: Order Completed\n")
		}
		b.WriteString(`steps:
  - id: idle
    wait: 30m
  - id: pick
    branch:
      - when: profile.computed.orders_count > 2
        next: vip_mail
      - else: mail
  - id: vip_mail
    send: {channel: email, template: vip}
    next: watch
  - id: mail
    send: {channel: email, template: regular}
  - id: watch
    wait_for:
      event: Email Opened
      timeout: 1d
      on_event: done
      on_timeout: nudge
  - id: nudge
    send: {channel: push, template: nudge}
  - id: done
    exit: true
`)
		files[fmt.Sprintf("bench_%04d.yaml", i)] = b.String()
	}
	return files
}

// benchMessageID is a random-looking messageId, as Segment's SDKs send
// (version 4 UUIDs): sequential ids would make the dedupe index look
// cheaper than it is.
func benchMessageID(seq int) string {
	x := uint64(seq) * 0x9e3779b97f4a7c15
	x ^= x >> 31
	y := x * 0xbf58476d1ce4e5b9
	y ^= y >> 29
	return fmt.Sprintf("%016x-%016x", x, y)
}

// BenchmarkEventsTenJourneys: events through Store.Ingest (batches of 100,
// fsync off) with the rules and ten journeys in the commit.
func BenchmarkEventsTenJourneys(b *testing.B) {
	h := openHarness(b, openPolicy, benchJourneys(10), true)
	const batch, people = 100, 2000
	ctx := context.Background()
	seq := 0
	next := func() *profiles.Event {
		seq++
		now := h.clock.Now()
		return &profiles.Event{
			Type: profiles.TypeTrack, MessageID: benchMessageID(seq), UserID: fmt.Sprintf("user-%d", seq*7919%people),
			Event: benchEvents[seq%len(benchEvents)], Properties: map[string]any{"price": float64(seq % 100), "sku": "sku-1"},
			Timestamp: now, ReceivedAt: now, Source: "bench",
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		evs := make([]*profiles.Event, n)
		for i := range evs {
			evs[i] = next()
		}
		if _, err := h.store.Ingest(ctx, evs); err != nil {
			b.Fatal(err)
		}
		done += n
		h.clock.Advance(time.Second)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkTriggerEval: the journey engine's own work for one event of a
// profile with no live instance, against 10 and 1000 journeys: every
// trigger's event name is compared, and the conditions of the journeys on
// that event run (all false, so nothing is written). In the shared cases
// journeys on one event use three distinct conditions (journeys made from
// a few templates); in distinct_conditions every condition differs but
// they share the part that decides; in distinct_first_part every
// journey's deciding part differs (the worst case: one CEL evaluation per
// journey on the event).
func BenchmarkTriggerEval(b *testing.B) {
	for _, c := range []struct {
		n        int
		distinct bool
		first    bool
	}{{10, false, false}, {1000, false, false}, {1000, true, false}, {1000, true, true}} {
		name := fmt.Sprintf("journeys=%d", c.n)
		switch {
		case c.first:
			name += "/distinct_first_part"
		case c.distinct:
			name += "/distinct_conditions"
		}
		n := c.n
		b.Run(name, func(b *testing.B) {
			files := map[string]string{}
			for i := range n {
				threshold, amount := i%3, 1000
				if c.distinct {
					threshold = i
				}
				if c.first {
					amount += i
				}
				files[fmt.Sprintf("j%04d.yaml", i)] = fmt.Sprintf(`id: j_%d
trigger:
  event: Event %d
  when: has(event.properties.amount) && event.properties.amount > %d.0 && profile.computed.orders_count > %d
steps:
  - id: hello
    send: {channel: email, template: hello}
`, i, i%10, amount, threshold)
			}
			h := openHarness(b, openPolicy, files, true)
			pid := h.track("ana", "Order Completed", nil)
			ev := &profiles.Event{Type: profiles.TypeTrack, MessageID: "x", UserID: "ana", Event: "Event 3",
				Properties: map[string]any{"amount": 5.0}, Timestamp: t0, ReceivedAt: t0, Source: "bench"}
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
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Event(p, ev); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := len(r.(*run).actions); n != 0 {
				b.Fatalf("the event started %d actions; want none", n)
			}
		})
	}
}

// BenchmarkTimerWakeups: FireDue over many due timers, 500 a commit as
// Engine.Run does; each moves an instance from its wait through a send to
// the next wait. One op is one timer.
func BenchmarkTimerWakeups(b *testing.B) {
	h := openHarness(b, openPolicy, map[string]string{"reminder.yaml": reminderJourney}, true)
	ctx := context.Background()
	now := h.clock.Now()
	evs := make([]*profiles.Event, 0, 1000)
	for i := range b.N {
		evs = append(evs, &profiles.Event{Type: profiles.TypeTrack, MessageID: fmt.Sprintf("m-%d", i), UserID: fmt.Sprintf("user-%d", i),
			Event: "Product Added", Timestamp: now, ReceivedAt: now, Source: "bench"})
		if len(evs) == cap(evs) || i == b.N-1 {
			if _, err := h.store.Ingest(ctx, evs); err != nil {
				b.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	at := now.Add(time.Hour)
	h.clock.Set(at)
	b.ReportAllocs()
	b.ResetTimer()
	fired := 0
	for {
		n, err := h.engine.FireDue(ctx, h.store, at, 500)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		fired += n
	}
	b.StopTimer()
	if fired != b.N {
		b.Fatalf("fired %d timers, want %d", fired, b.N)
	}
	b.ReportMetric(float64(fired)/b.Elapsed().Seconds(), "timers/s")
}

// BenchmarkCompileExpression is compiling one journey condition in the
// rules' environment, type check and cost estimate included, as loading
// a journey file does for each of its expressions.
func BenchmarkCompileExpression(b *testing.B) {
	h := openHarness(b, openPolicy, nil, true)
	rs, _ := h.compile()
	const expr = `has(event.properties.price) && event.properties.price > 10.0 && profile.computed.orders_count > 2 && !in_audience("vip")`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rs.Env.Compile(expr, types.BoolType); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadJourneys is loading 1000 journey files of the benchmark
// shapes from a folder, as serve does at start-up and on a reload, on one
// core and on all of them; µs/expr is the wall time per CEL expression.
func BenchmarkLoadJourneys(b *testing.B) {
	h := openHarness(b, openPolicy, nil, true)
	rs, pol := h.compile()
	dir := b.TempDir()
	exprs := 0
	for name, src := range benchJourneys(1000) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			b.Fatal(err)
		}
		exprs += strings.Count(src, "when: ")
	}
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			for b.Loop() {
				js, err := LoadDir(dir, rs.Env, knownOf(rs, pol.Policy))
				if err != nil || len(js) != 1000 {
					b.Fatalf("loaded %d journeys: %v", len(js), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*exprs), "µs/expr")
		})
	}
}
