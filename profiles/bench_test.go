package profiles

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// benchPeople is how many people the ingest benchmark's events are about.
const benchPeople = 10_000

// benchEvent makes a realistic event about person p: mostly anonymous
// browsing, then signed-in tracking, identifies that link the two (and
// merge when both already have a profile), and a few consent changes.
func benchEvent(rng *rand.Rand, seq int64) *Event { return benchEventAmong(rng, seq, benchPeople) }

// benchEventAmong makes such an event about one of people people.
func benchEventAmong(rng *rand.Rand, seq int64, people int) *Event {
	return benchEventFor(rng, seq, rng.IntN(people))
}

// benchEventFor makes such an event about person p.
func benchEventFor(rng *rand.Rand, seq int64, p int) *Event {
	u, a := fmt.Sprintf("user-%d", p), fmt.Sprintf("anon-%d", p)
	id := fmt.Sprintf("bench-%d", seq)
	ts := at(time.Duration(seq) * time.Millisecond)
	switch r := rng.IntN(100); {
	case r < 50:
		return track(id, "Product Viewed", anon(a), props("product_id", fmt.Sprintf("sku-%d", rng.IntN(500)), "price", json.Number("19.90")), ts)
	case r < 65:
		return newEvent(TypePage, id, anon(a), func(e *Event) { e.Name = "Category" }, props("path", "/c/shoes"), ts)
	case r < 85:
		return track(id, "Order Completed", user(u), props("order_id", id, "revenue", json.Number("59.70"), "products", []any{map[string]any{"sku": "sku-1"}}), ts)
	case r < 97:
		return identify(id, user(u), anon(a), traits("email", fmt.Sprintf("Person.%d@Example.com", p), "plan", "pro", "city", "Madrid"), ts)
	default:
		return track(id, EventConsentUpdated, user(u), props("email", rng.IntN(2) == 0), ts)
	}
}

// BenchmarkIngest measures durable ingestion (fsync on every group commit)
// from parallel callers, without HTTP: one op is one Ingest call.
func BenchmarkIngest(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ts := openStore(b, DefaultConfig())
			var seq, worker atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(uint64(worker.Add(1)), 7))
				batch := make([]*Event, size)
				for pb.Next() {
					for i := range batch {
						batch[i] = benchEvent(rng, seq.Add(1))
					}
					if _, err := ts.Ingest(context.Background(), batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "events/s")
			// How many people the store holds at the end: anonymous and
			// known profiles of a person stay apart until an identify.
			b.ReportMetric(float64(ts.ProfileCount()), "profiles")
		})
	}
}

// BenchmarkDecode measures decoding and validation of one track message and
// of a batch of 100.
func BenchmarkDecode(b *testing.B) {
	track := `{"type":"track","messageId":"0b6b5ad8-6a14-4d5e-8d3e-7f1c2b9a6c11","anonymousId":"anon-123","userId":"user-123",` +
		`"event":"Order Completed","properties":{"order_id":"o-981","revenue":59.7,"currency":"EUR","products":[{"sku":"sku-1","price":19.9,"quantity":3}]},` +
		`"context":{"library":{"name":"analytics.js","version":"5.2.0"},"ip":"192.0.2.1","userAgent":"Mozilla/5.0","page":{"path":"/checkout"}},` +
		`"timestamp":"2026-03-02T10:00:00.123Z","sentAt":"2026-03-02T10:00:01.456Z"}`
	batch := `{"sentAt":"2026-03-02T10:00:01Z","batch":[` + strings.TrimSuffix(strings.Repeat(track+",", 100), ",") + `]}`
	opts := DecodeOptions{Source: "web", ReceivedAt: time.Now(), NewID: func() string { return "generated" }}
	b.Run("track", func(b *testing.B) {
		body := []byte(track)
		opts := opts
		opts.Type = TypeTrack
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := Decode(body, opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stored", func(b *testing.B) {
		opts := opts
		opts.Type = TypeTrack
		e, err := Decode([]byte(track), opts)
		if err != nil {
			b.Fatal(err)
		}
		body, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var back Event
			if err := decodeEvent(body, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch=100", func(b *testing.B) {
		body := []byte(batch)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := DecodeBatch(body, opts); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMerge measures one merge: an identify linking an anonymous
// profile and a known one, each holding 5 events. fsync is off so that the
// number is the merge's own work (moving events, folding profiles, the
// ledger), not the disk's.
func BenchmarkMerge(b *testing.B) {
	cfg := DefaultConfig()
	cfg.NoSync = true
	ts := openStore(b, cfg)
	var setup []*Event
	flush := func() {
		if len(setup) > 0 {
			ts.ingest(setup...)
			setup = setup[:0]
		}
	}
	for i := range b.N {
		u, a := fmt.Sprintf("u%d", i), fmt.Sprintf("a%d", i)
		for j := range 5 {
			setup = append(setup,
				track(fmt.Sprintf("a%d-%d", i, j), "Product Viewed", anon(a), at(time.Duration(j)*time.Minute)),
				track(fmt.Sprintf("u%d-%d", i, j), "Order Completed", user(u), traits("plan", "pro"), at(time.Duration(j)*time.Minute)))
		}
		if len(setup) >= 2000 {
			flush()
		}
	}
	flush()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		res, err := ts.Ingest(context.Background(), []*Event{identify(fmt.Sprintf("merge-%d", i), user(fmt.Sprintf("u%d", i)), anon(fmt.Sprintf("a%d", i)))})
		if err != nil {
			b.Fatal(err)
		}
		if len(res[0].Merged) != 1 {
			b.Fatalf("identify %d merged %v, want one profile", i, res[0].Merged)
		}
	}
	b.StopTimer()
	if got, want := ts.ProfileCount(), int64(b.N); got != want {
		b.Fatalf("%d profiles after %d merges, want %d", got, b.N, want)
	}
}

// BenchmarkHotProfiles measures what the hot-profile cache saves or costs
// per event, in CPU time of the whole process (garbage collection
// included: the profiles it holds are scanned at every cycle), so that the
// figure holds on a busy machine. People are drawn uniformly from 10,000,
// or skewed (Zipf, s=1.2) over 100,000 as shoppers come back in sessions.
func BenchmarkHotProfiles(b *testing.B) {
	for _, load := range []string{"uniform", "zipf"} {
		for _, hot := range []int{0, 2_000, 20_000} {
			b.Run(fmt.Sprintf("%s/hot=%d", load, hot), func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.NoSync = true
				cfg.HotProfiles = hot
				ts := openStore(b, cfg)
				rng := rand.New(rand.NewPCG(1, 7))
				zipf := rand.NewZipf(rng, 1.2, 1, 99_999)
				var seq int64
				batch := make([]*Event, 100)
				next := func() {
					for i := range batch {
						seq++
						if load == "zipf" {
							batch[i] = benchEventFor(rng, seq, int(zipf.Uint64()))
						} else {
							batch[i] = benchEventAmong(rng, seq, 10_000)
						}
					}
				}
				b.ReportAllocs()
				cpu0 := processCPU(b)
				b.ResetTimer()
				for b.Loop() {
					next()
					if _, err := ts.Ingest(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N*len(batch)), "cpu-µs/event")
				hit := testutil.ToFloat64(ts.metrics.HotReads.WithLabelValues("hit"))
				all := hit + testutil.ToFloat64(ts.metrics.HotReads.WithLabelValues("miss")) + testutil.ToFloat64(ts.metrics.HotReads.WithLabelValues("stale"))
				if all > 0 {
					b.ReportMetric(100*hit/all, "%hits")
				}
			})
		}
	}
}

// processCPU is the CPU time (user and system) the process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
