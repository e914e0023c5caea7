package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"

	"cartera/profiles"
)

// BenchmarkAudienceEval is one evaluation of a typical audience condition,
// with the Input reused as the engine does. Both sides of || run.
func BenchmarkAudienceEval(b *testing.B) {
	env, err := NewEnv([]Field{{Name: "purchase_propensity", Kind: KindDouble}}, EnvOptions{})
	if err != nil {
		b.Fatal(err)
	}
	prg, err := env.Compile(`profile.traits.vip == true || profile.computed.purchase_propensity > 0.7`, types.BoolType)
	if err != nil {
		b.Fatal(err)
	}
	in := &Input{
		Profile: &ProfileView{
			ID:       "p1",
			Traits:   map[string]any{"vip": false, "plan": "pro", "email": "ana@example.com"},
			Computed: []any{0.5},
		},
		Now: now,
	}
	if ok, err := prg.Bool(in); err != nil || ok {
		b.Fatalf("Bool = %v, %v; want false, nil", ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := prg.Bool(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTraitUpdate is one computed-trait update per event: add and
// prune, on a 90-day windowed count (events six hours apart, so the window
// holds 360 buckets once full) and on an all-time sum.
func BenchmarkTraitUpdate(b *testing.B) {
	for _, spec := range []TraitSpec{
		{Name: "orders_90d", Aggregate: "count", Event: "Order Completed", Window: 90 * day},
		{Name: "lifetime_value", Aggregate: "sum", Event: "Order Completed", Property: "revenue"},
	} {
		b.Run(spec.Name, func(b *testing.B) {
			tr := compileTrait(b, spec)
			st := &traitState{}
			e := track("Order Completed", now, map[string]any{"revenue": json.Number("49.90")})
			clock := now
			// Fill the window first, so the loop measures the steady state.
			for range 400 {
				clock = clock.Add(6 * time.Hour)
				e.Timestamp = clock
				tr.add(st, e)
				tr.prune(st, clock)
			}
			b.ReportAllocs()
			for b.Loop() {
				clock = clock.Add(6 * time.Hour)
				e.Timestamp = clock
				tr.add(st, e)
				tr.prune(st, clock)
			}
			if v := tr.read(st, clock); v == nil {
				b.Fatal("no value")
			}
		})
	}
}

// BenchmarkEngineIngest is events through Store.Ingest, one per call, with
// and without the example ruleset: orders and product views of 100 people.
// fsync is off (profiles.Config.NoSync) so that the numbers are the
// engine's, not the disk's.
func BenchmarkEngineIngest(b *testing.B) {
	for _, withRules := range []bool{false, true} {
		name := "no_rules"
		if withRules {
			name = "example_rules"
		}
		b.Run(name, func(b *testing.B) {
			cfg := profiles.DefaultConfig()
			cfg.NoSync = true
			st, err := profiles.Open(context.Background(), filepath.Join(b.TempDir(), "cartera.db"), cfg, profiles.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := st.Close(); err != nil {
					b.Error(err)
				}
			}()
			if withRules {
				eng, err := NewEngine(st.DB(), loadExamples(b), EngineOptions{})
				if err != nil {
					b.Fatal(err)
				}
				st.Use(eng)
			}
			ctx := context.Background()
			i := 0
			next := func() *profiles.Event {
				i++
				e := &profiles.Event{
					Type: profiles.TypeTrack, MessageID: fmt.Sprintf("bench-%d", i), UserID: fmt.Sprintf("user-%d", i%100),
					Timestamp: time.Now(), ReceivedAt: time.Now(), Source: "web",
				}
				if i%3 == 0 {
					e.Event, e.Properties = "Order Completed", map[string]any{"revenue": json.Number("49.90")}
				} else {
					e.Event, e.Properties = "Product Viewed", map[string]any{"category": "shoes"}
				}
				return e
			}
			// Create the profiles first.
			for range 100 {
				if _, err := st.Ingest(ctx, []*profiles.Event{next()}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.Ingest(ctx, []*profiles.Event{next()}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAudienceReevaluation is the re-evaluation of every audience of
// the examples (4, one of them on another's membership and on the
// purchase_propensity expression trait) for one profile, as each event
// does: the profile view with its computed traits, then each condition.
func BenchmarkAudienceReevaluation(b *testing.B) {
	cfg := profiles.DefaultConfig()
	cfg.NoSync = true
	st, err := profiles.Open(context.Background(), filepath.Join(b.TempDir(), "cartera.db"), cfg, profiles.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	eng, err := NewEngine(st.DB(), loadExamples(b), EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	st.Use(eng)
	res, err := st.Ingest(context.Background(), []*profiles.Event{
		{Type: profiles.TypeTrack, MessageID: "o1", UserID: "ana", Event: "Order Completed", Properties: map[string]any{"revenue": json.Number("59.90")}, Timestamp: now, ReceivedAt: now, Source: "web"},
		{Type: profiles.TypeTrack, MessageID: "a1", UserID: "ana", Event: "Product Added", Timestamp: now, ReceivedAt: now, Source: "web"},
	})
	if err != nil {
		b.Fatal(err)
	}
	tx, err := st.DB().Begin(true)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	p, err := profiles.ReadProfile(tx, res[0].ProfileID)
	if err != nil {
		b.Fatal(err)
	}
	w := eng.Begin(tx).(*txWork)
	ps, err := w.state(p.ID)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.evaluate(p, ps, now); err != nil {
			b.Fatal(err)
		}
	}
}
