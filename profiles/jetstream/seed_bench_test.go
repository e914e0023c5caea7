package jetstream_test

import (
	"context"
	"fmt"
	"testing"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// BenchmarkSeed seeds an empty identity index from a store of b.N
// profiles, each with a user id, an anonymous id and an email (one in five
// linked by a server source, so protected): three identifier keys, three
// counts and for some a protection mark each, on an embedded NATS server
// (file storage). It reports profiles/s; building the store is not timed.
//
//	go test -run '^$' -bench BenchmarkSeed -benchtime 20000x ./profiles/jetstream
func BenchmarkSeed(b *testing.B) {
	ctx := context.Background()
	srcs := seedSources(b)
	st := seedStore(b, profiles.DefaultIdentityConfig(), srcs)
	var batch []*profiles.Event
	for i := range b.N {
		source := "web"
		if i%5 == 0 {
			source = "crm"
		}
		batch = append(batch, personEvent(source, fmt.Sprintf("user-%d", i), fmt.Sprintf("device-%d", i), fmt.Sprintf("user-%d@example.com", i)))
		if len(batch) == 1000 || i == b.N-1 {
			if _, err := st.Ingest(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	cfg := testConfig(startNATSB(b))
	r, err := jetstream.NewRouter(ctx, open(b, cfg), jetstream.RouterConfig{Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now, Trust: srcs})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	stats, err := r.Seed(ctx, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if stats.Profiles != int64(b.N) || stats.Linked != 3*int64(b.N) {
		b.Fatalf("seeded %+v, want %d profiles and %d identifiers", stats, b.N, 3*b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "profiles/s")
}
