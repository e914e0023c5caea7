package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"cartera/profiles"
)

const day = 24 * time.Hour

// compileTrait compiles one computed trait as a rule file would declare it.
func compileTrait(t testing.TB, spec TraitSpec) *Trait {
	t.Helper()
	rs, err := Compile(&Specs{Traits: []*TraitSpec{&spec}}, EnvOptions{})
	if err != nil {
		t.Fatalf("Compile %s: %v", spec.Name, err)
	}
	tr, ok := rs.Trait(spec.Name)
	if !ok {
		t.Fatalf("trait %s not compiled", spec.Name)
	}
	return tr
}

func track(event string, at time.Time, props map[string]any) *profiles.Event {
	return &profiles.Event{Type: profiles.TypeTrack, Event: event, Properties: props, Timestamp: at}
}

// feed folds events into a state as the engine does: only those that
// match, then a prune at the clock.
func feed(t testing.TB, tr *Trait, st *traitState, clock time.Time, evs ...*profiles.Event) {
	t.Helper()
	for _, e := range evs {
		in := &Input{Profile: &ProfileView{}, Event: ViewOf(e), Now: clock}
		ok, err := tr.matches(e, in)
		if err != nil {
			t.Fatalf("matches: %v", err)
		}
		if ok {
			tr.add(st, e)
		}
		tr.prune(st, clock)
	}
}

// roundTrip stores and loads a state the way the engine keeps it between
// transactions.
func roundTrip(t testing.TB, st *traitState) *traitState {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	out := &traitState{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameValue(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb)
	}
	return reflect.DeepEqual(a, b)
}

// TestWindowEdges checks that a window counts now-window < t <= now, to the
// millisecond, as the clock moves on.
func TestWindowEdges(t *testing.T) {
	tr := compileTrait(t, TraitSpec{Name: "orders_90d", Aggregate: "count", Event: "Order Completed", Window: 90 * day})
	edge := now.Add(-90 * day)
	events := []*profiles.Event{
		track("Order Completed", edge, nil),                       // exactly at the edge: out
		track("Order Completed", edge.Add(time.Millisecond), nil), // 1ms inside: in
		track("Order Completed", now.Add(-time.Hour), nil),
		track("Order Completed", now, nil),                    // at now: in
		track("Order Completed", now.Add(time.Hour), nil),     // future: not yet
		track("Product Viewed", now.Add(-time.Minute), nil),   // other event
		track("Order Completed", now.Add(-100*day), nil),      // long gone
		track("Order Completed", edge.Add(-time.Second), nil), // just gone
	}
	steps := []struct {
		at   time.Time
		want int64
	}{
		{now.Add(-time.Millisecond), 3}, // the edge event is still in, the now event not yet
		{now, 3},
		{now.Add(time.Millisecond), 2}, // the 1ms-inside event reaches the edge
		{now.Add(time.Hour - time.Millisecond), 2},
		{now.Add(time.Hour), 3}, // the future event arrives
		{now.Add(90*day - time.Hour - time.Millisecond), 3},
		{now.Add(90*day - time.Hour), 2}, // now-1h reaches the edge
		{now.Add(90*day - time.Millisecond), 2},
		{now.Add(90 * day), 1}, // now reaches the edge
		{now.Add(90*day + time.Hour - time.Millisecond), 1},
		{now.Add(90*day + time.Hour), 0},
	}

	// Read without pruning: the window alone decides.
	st := &traitState{}
	for _, e := range events {
		if ok, _ := tr.matches(e, nil); ok {
			tr.add(st, e)
		}
	}
	for _, s := range steps {
		if got := tr.read(st, s.at); got != s.want {
			t.Errorf("count at now%+v = %v, want %d", s.at.Sub(now), got, s.want)
		}
	}

	// Pruning at the clock as it moves never drops what a read at or after
	// the clock still sees.
	st = &traitState{}
	feed(t, tr, st, now, events...)
	if len(st.Buckets) != 4 {
		t.Errorf("%d buckets after prune at now, want 4 (edge+1ms, now-1h, now, now+1h)", len(st.Buckets))
	}
	for _, s := range steps[1:] {
		tr.prune(st, s.at)
		st = roundTrip(t, st)
		if got := tr.read(st, s.at); got != s.want {
			t.Errorf("pruned count at now%+v = %v, want %d", s.at.Sub(now), got, s.want)
		}
	}
	if len(st.Buckets) != 0 {
		t.Errorf("%d buckets left after every event left the window, want 0", len(st.Buckets))
	}
}

func TestBucketsInOrder(t *testing.T) {
	tr := compileTrait(t, TraitSpec{Name: "orders_7d", Aggregate: "count", Event: "Order Completed", Window: 7 * day})
	st := &traitState{}
	ms := time.Millisecond
	feed(t, tr, st, now,
		track("Order Completed", now.Add(-3*ms), nil),
		track("Order Completed", now.Add(-1*ms), nil),
		track("Order Completed", now.Add(-2*ms), nil),
		track("Order Completed", now.Add(-1*ms+500*time.Microsecond), nil), // same millisecond
	)
	var ts []int64
	for _, b := range st.Buckets {
		ts = append(ts, now.UnixMilli()-b.T)
	}
	if !slices.Equal(ts, []int64{3, 2, 1}) {
		t.Errorf("buckets at now-%v ms, want 3, 2, 1", ts)
	}
	if n := st.Buckets[2].N; n != 2 {
		t.Errorf("events in the shared millisecond bucket = %d, want 2", n)
	}
	if got := tr.read(st, now); got != int64(4) {
		t.Errorf("count = %v, want 4", got)
	}
}

// TestAggregates runs every aggregate over the same events without a
// window and with one that holds them all: both must agree, also after the
// state is stored and loaded.
func TestAggregates(t *testing.T) {
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	ev := func(d time.Duration, v any) *profiles.Event {
		props := map[string]any{}
		if v != nil {
			props["v"] = v
		}
		return track("E", at(d), props)
	}
	tests := []struct {
		name   string
		agg    string
		prop   string
		limit  int
		events []*profiles.Event
		want   any
	}{
		{"count", "count", "", 0, []*profiles.Event{ev(3*day, nil), ev(2*day, 1), ev(day, "x")}, int64(3)},
		{"count of nothing", "count", "", 0, nil, int64(0)},
		{"sum", "sum", "v", 0, []*profiles.Event{
			ev(6*day, json.Number("100")), ev(5*day, 250.5), ev(4*day, 5), ev(3*day, "abc"),
			ev(2*day, true), ev(2*day, nil), ev(day, json.Number("-5.5")),
		}, 350.0},
		{"sum of nothing", "sum", "v", 0, []*profiles.Event{ev(day, "abc")}, 0.0},
		{"min ignores non-numbers", "min", "v", 0, []*profiles.Event{
			ev(5*day, 30), ev(4*day, json.Number("12.5")), ev(3*day, "7"), ev(2*day, false), ev(day, 99.0),
		}, 12.5},
		{"max ignores non-numbers", "max", "v", 0, []*profiles.Event{
			ev(5*day, 30), ev(4*day, "1000"), ev(3*day, json.Number("99")), ev(day, -1),
		}, 99.0},
		{"min negative", "min", "v", 0, []*profiles.Event{ev(2*day, 3), ev(day, json.Number("-2"))}, -2.0},
		{"min of no numbers", "min", "v", 0, []*profiles.Event{ev(day, "x")}, nil},
		{"max of no numbers", "max", "v", 0, nil, nil},
		{"first by timestamp, not arrival", "first", "v", 0, []*profiles.Event{
			ev(2*day, "b"), ev(day, "c"), ev(3*day, "a"), ev(time.Hour, "d"),
		}, "a"},
		{"last by timestamp, not arrival", "last", "v", 0, []*profiles.Event{
			ev(2*day, "b"), ev(day, "c"), ev(3*day, "a"),
		}, "c"},
		{"first in one millisecond: first to arrive", "first", "v", 0, []*profiles.Event{ev(day, "x"), ev(day, "y")}, "x"},
		{"last in one millisecond: last to arrive", "last", "v", 0, []*profiles.Event{ev(day, "x"), ev(day, "y")}, "y"},
		{"first without property is the time", "first", "", 0, []*profiles.Event{ev(2*day, nil), ev(3*day, nil), ev(day, nil)}, at(3 * day)},
		{"last without property is the time", "last", "", 0, []*profiles.Event{ev(2*day, nil), ev(day, nil), ev(3*day, nil)}, at(day)},
		{"first of nothing", "first", "", 0, nil, nil},
		{"first skips events without the property", "first", "v", 0, []*profiles.Event{ev(3*day, nil), ev(2*day, "b")}, "b"},
		{"distinct keeps the most recent", "distinct", "v", 3, []*profiles.Event{
			ev(5*day, "a"), ev(4*day, "b"), ev(3*day, "c"), ev(2*day, "a"), ev(day, "d"),
			ev(6*day, "e"), // late and oldest: not kept
		}, []any{"c", "a", "d"}},
		{"distinct of numbers and bools", "distinct", "v", 0, []*profiles.Event{
			ev(3*day, json.Number("42")), ev(2*day, true), ev(day, json.Number("42")), ev(day, ""),
		}, []any{"true", "42"}},
		{"distinct default limit", "distinct", "v", 0, manyValues(25), values(5, 25)},
		{"most_frequent", "most_frequent", "v", 0, []*profiles.Event{
			ev(5*day, "shoes"), ev(4*day, "hats"), ev(3*day, "hats"), ev(2*day, "bags"), ev(day, "hats"),
		}, "hats"},
		{"most_frequent tie goes to the smaller value", "most_frequent", "v", 0, []*profiles.Event{
			ev(4*day, "shoes"), ev(3*day, "bags"), ev(2*day, "shoes"), ev(day, "bags"),
		}, "bags"},
		{"most_frequent of nothing", "most_frequent", "v", 0, []*profiles.Event{ev(day, 1.5)}, nil},
	}
	for _, tt := range tests {
		for _, window := range []time.Duration{0, 365 * day} {
			name := tt.name
			if window > 0 {
				name += " in a window"
			}
			t.Run(name, func(t *testing.T) {
				tr := compileTrait(t, TraitSpec{Name: "x", Aggregate: tt.agg, Event: "E", Property: tt.prop, Limit: tt.limit, Window: window})
				st := &traitState{}
				feed(t, tr, st, now, tt.events...)
				if got := tr.read(st, now); !sameValue(got, tt.want) {
					t.Errorf("read = %#v, want %#v", got, tt.want)
				}
				if got := tr.read(roundTrip(t, st), now); !sameValue(got, tt.want) {
					t.Errorf("read after store and load = %#v, want %#v", got, tt.want)
				}
			})
		}
	}
}

// manyValues is n events with values v00, v01, … one minute apart.
func manyValues(n int) []*profiles.Event {
	var out []*profiles.Event
	for i := range n {
		out = append(out, track("E", now.Add(-time.Duration(n-i)*time.Minute), map[string]any{"v": fmt.Sprintf("v%02d", i)}))
	}
	return out
}

func values(from, to int) []any {
	var out []any
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("v%02d", i))
	}
	return out
}

// TestWindowedAggregates checks that every aggregate forgets what leaves
// the window.
func TestWindowedAggregates(t *testing.T) {
	ev := func(at time.Time, v any) *profiles.Event { return track("E", at, map[string]any{"v": v}) }
	events := []*profiles.Event{
		ev(now.Add(-8*day), json.Number("1")),  // out at now
		ev(now.Add(-6*day), json.Number("20")), // out at now+1d
		ev(now.Add(-1*day), json.Number("5.5")),
		ev(now.Add(-1*day+time.Millisecond), "x"),
		ev(now.Add(time.Hour), json.Number("1000")), // in from now+1h
	}
	tests := []struct {
		agg        string
		atNow, ata any // at now, and at now+1d
	}{
		{"count", int64(3), int64(3)},
		{"sum", 25.5, 1005.5},
		{"min", 5.5, 5.5},
		{"max", 20.0, 1000.0},
		{"first", json.Number("20"), json.Number("5.5")},
		{"last", "x", json.Number("1000")},
		{"distinct", []any{"20", "5.5", "x"}, []any{"5.5", "x", "1000"}},
		{"most_frequent", "20", "1000"},
	}
	for _, tt := range tests {
		t.Run(tt.agg, func(t *testing.T) {
			tr := compileTrait(t, TraitSpec{Name: "x", Aggregate: tt.agg, Event: "E", Property: "v", Window: 7 * day})
			st := &traitState{}
			feed(t, tr, st, now, events...)
			if got := tr.read(st, now); !sameValue(got, tt.atNow) {
				t.Errorf("at now = %#v, want %#v", got, tt.atNow)
			}
			later := now.Add(day)
			tr.prune(st, later)
			st = roundTrip(t, st)
			if got := tr.read(st, later); !sameValue(got, tt.ata) {
				t.Errorf("at now+1d = %#v, want %#v", got, tt.ata)
			}
		})
	}
}

// TestBucketOverflow checks that past maxBuckets the two oldest buckets
// merge: totals stay exact, and the merged events leave the window with
// the newer of the two.
func TestBucketOverflow(t *testing.T) {
	const window = 30 * day
	edge := now.Add(-window)
	// Event i at edge + (i+1)s, value i; all in the window at now.
	var events []*profiles.Event
	for i := range maxBuckets + 1 {
		events = append(events, track("E", edge.Add(time.Duration(i+1)*time.Second), map[string]any{"v": json.Number(fmt.Sprint(i))}))
	}
	const n = maxBuckets + 1
	sumAll := float64(n*(n-1)) / 2

	for _, agg := range []string{"count", "sum", "first", "min", "most_frequent"} {
		t.Run(agg, func(t *testing.T) {
			tr := compileTrait(t, TraitSpec{Name: "x", Aggregate: agg, Event: "E", Property: "v", Window: window})
			st := &traitState{}
			feed(t, tr, st, now, events...)
			if len(st.Buckets) != maxBuckets {
				t.Fatalf("%d buckets, want maxBuckets = %d", len(st.Buckets), maxBuckets)
			}
			b := st.Buckets[0]
			if b.N != 2 || b.T != events[1].Timestamp.UnixMilli() {
				t.Errorf("oldest bucket has %d events at %d, want the first two merged at the second's time %d", b.N, b.T, events[1].Timestamp.UnixMilli())
			}
			want := map[string][3]any{
				// at now, at now+1s (event 0 at the edge, kept by the merge), at now+2s
				"count":         {int64(n), int64(n), int64(n - 2)},
				"sum":           {sumAll, sumAll, sumAll - 1},
				"first":         {json.Number("0"), json.Number("0"), json.Number("2")},
				"min":           {0.0, 0.0, 2.0},
				"most_frequent": {"0", "0", "10"}, // all tie: the smallest string
			}[agg]
			for i, at := range []time.Time{now, now.Add(time.Second), now.Add(2 * time.Second)} {
				tr.prune(st, at)
				if got := tr.read(st, at); !sameValue(got, want[i]) {
					t.Errorf("at now+%ds = %#v, want %#v", i, got, want[i])
				}
			}
		})
	}
}

func TestMostFrequentBounded(t *testing.T) {
	tr := compileTrait(t, TraitSpec{Name: "x", Aggregate: "most_frequent", Event: "E", Property: "v"})
	st := &traitState{}
	feed(t, tr, st, now, track("E", now, map[string]any{"v": "top"}), track("E", now, map[string]any{"v": "top"}))
	for i := range 2 * maxFrequencies {
		feed(t, tr, st, now, track("E", now, map[string]any{"v": fmt.Sprintf("v%03d", i)}))
	}
	if len(st.Freq) != maxFrequencies {
		t.Errorf("%d values counted, want at most %d", len(st.Freq), maxFrequencies)
	}
	if got := tr.read(st, now); got != "top" {
		t.Errorf("most_frequent = %v, want top", got)
	}
}

func TestTraitMatches(t *testing.T) {
	pos := compileTrait(t, TraitSpec{Name: "store_orders", Aggregate: "count", Event: "Order Completed",
		Where: Expr{Source: `event.source == "pos" || event.properties.channel == "pos"`}})
	pricing := compileTrait(t, TraitSpec{Name: "pricing_views", Aggregate: "count", Event: "Pricing"})
	category := compileTrait(t, TraitSpec{Name: "category", Aggregate: "most_frequent", Event: "Product Viewed", Property: "product.category"})

	fromPOS := track("Order Completed", now, nil)
	fromPOS.Source = "pos"
	tests := []struct {
		tr   *Trait
		e    *profiles.Event
		want bool
	}{
		{pos, fromPOS, true},
		{pos, track("Order Completed", now, map[string]any{"channel": "pos"}), true},
		{pos, track("Order Completed", now, map[string]any{"channel": "web"}), false},
		{pos, track("Product Viewed", now, map[string]any{"channel": "pos"}), false},
		{pricing, &profiles.Event{Type: profiles.TypePage, Name: "Pricing", Timestamp: now}, true},
		{pricing, &profiles.Event{Type: profiles.TypeScreen, Name: "Pricing", Timestamp: now}, true},
		{pricing, &profiles.Event{Type: profiles.TypePage, Name: "Home", Timestamp: now}, false},
		{pricing, &profiles.Event{Type: profiles.TypeIdentify, Timestamp: now}, false},
	}
	for i, tt := range tests {
		in := &Input{Profile: &ProfileView{}, Event: ViewOf(tt.e), Now: now}
		got, err := tt.tr.matches(tt.e, in)
		if err != nil || got != tt.want {
			t.Errorf("%d: %s matches %s %q = %v, %v; want %v", i, tt.tr.Name(), tt.e.Type, eventName(tt.e), got, err, tt.want)
		}
	}

	st := &traitState{}
	feed(t, category, st, now,
		track("Product Viewed", now, map[string]any{"product": map[string]any{"category": "shoes"}}),
		track("Product Viewed", now, map[string]any{"product": map[string]any{"category": "bags"}}),
		track("Product Viewed", now, map[string]any{"product": map[string]any{"category": "shoes"}}),
		track("Product Viewed", now, map[string]any{"product": "not a map"}),
		track("Product Viewed", now, map[string]any{"category": "hats"}),
		track("Product Viewed", now, map[string]any{"product": map[string]any{"category": "hats"}}),
	)
	if got := category.read(st, now); got != "shoes" {
		t.Errorf("most frequent product.category = %v, want shoes", got)
	}
	if len(st.Freq) != 3 {
		t.Errorf("counted %v, want shoes, bags, hats", st.Freq)
	}
}

func TestPruneUnwindowed(t *testing.T) {
	tr := compileTrait(t, TraitSpec{Name: "orders", Aggregate: "count", Event: "E"})
	st := &traitState{}
	feed(t, tr, st, now, track("E", now.Add(-10*365*day), nil))
	tr.prune(st, now.Add(365*day))
	if got := tr.read(st, now.Add(365*day)); got != int64(1) {
		t.Errorf("count without a window = %v, want 1 forever", got)
	}
}

// TestDistinctWithinOneMillisecond checks that values sharing a window
// bucket come out in the same order on every read (not map order).
func TestDistinctWithinOneMillisecond(t *testing.T) {
	tr := compileTrait(t, TraitSpec{Name: "x", Aggregate: "distinct", Event: "E", Property: "v", Limit: 3, Window: 7 * day})
	st := &traitState{}
	for _, v := range []string{"d", "b", "e", "a", "c"} {
		feed(t, tr, st, now, track("E", now.Add(-time.Hour), map[string]any{"v": v}))
	}
	first := tr.read(st, now)
	if l, _ := first.([]any); len(l) != 3 {
		t.Fatalf("distinct = %v, want 3 values", first)
	}
	for range 50 {
		if got := tr.read(st, now); !reflect.DeepEqual(got, first) {
			t.Fatalf("distinct = %v, then %v: order depends on map iteration", first, got)
		}
	}
}

// TestContextProperty reads a trait's value from event.context, where
// browser SDKs put the campaign (UTM parameters) of a visit: first-touch and
// last-touch campaign.
func TestContextProperty(t *testing.T) {
	visit := func(d time.Duration, campaign map[string]any, props map[string]any) *profiles.Event {
		e := &profiles.Event{Type: profiles.TypePage, Name: "Home", Properties: props, Timestamp: now.Add(-d)}
		if campaign != nil {
			e.Context = map[string]any{"campaign": campaign}
		}
		return e
	}
	events := []*profiles.Event{
		visit(3*day, map[string]any{"source": "newsletter", "name": "spring"}, nil),
		visit(2*day, nil, map[string]any{"campaign": map[string]any{"source": "not-the-context"}}),
		visit(day, map[string]any{"source": "google", "medium": "cpc"}, nil),
	}
	tests := []struct {
		agg, prop string
		want      any
	}{
		{"first", "context.campaign.source", "newsletter"},
		{"last", "context.campaign.source", "google"},
		{"first", "context.campaign.name", "spring"},
		{"last", "context.campaign.name", "spring"},
		{"distinct", "context.campaign.source", []any{"newsletter", "google"}},
		// Without the prefix the path stays under properties.
		{"last", "campaign.source", "not-the-context"},
		{"last", "properties.campaign.source", "not-the-context"},
	}
	for _, tt := range tests {
		t.Run(tt.agg+" "+tt.prop, func(t *testing.T) {
			spec := TraitSpec{Name: "x", Aggregate: tt.agg, Property: tt.prop}
			// As a rule file would spell it: "properties." is dropped.
			spec.Property, _ = strings.CutPrefix(spec.Property, "properties.")
			tr := compileTrait(t, spec)
			st := &traitState{}
			feed(t, tr, st, now, events...)
			if got := tr.read(roundTrip(t, st), now); !sameValue(got, tt.want) {
				t.Errorf("read = %#v, want %#v", got, tt.want)
			}
		})
	}
}
