package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.etcd.io/bbolt"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/eventlog"
	"cartera/profiles/jetstream"
)

// The capacity benchmarks of docs/cluster.md ("Measurements and a capacity
// model"). Each is meant to run once per sub-benchmark:
//
//	go test -run '^$' -bench 'BenchmarkAppend$|BenchmarkNodeApply' -benchtime 1x ./profiles/jetstream
//	go test -run '^$' -bench BenchmarkAppendR3 -benchtime 1x ./profiles/jetstream   (not with -race)
//
// The NATS servers run in the benchmark's process, so the CPU time per
// event they report is the client's and the servers' together; with
// CARTERA_BENCH_NATS=nats://host:port (a nats-server started with -js)
// the single-server benchmarks use that server instead and report
// Cartera's CPU time alone. None of them runs without -bench.

// benchPeople is how many people the capacity benchmarks' events are about.
const benchPeople = 10_000

// benchRecord is the JSON record of a realistic event about person p, the
// same mix as profiles' BenchmarkIngest (benchEventFor): mostly anonymous
// browsing, signed-in orders, identifies linking the two, a few consent
// changes.
func benchRecord(rng *rand.Rand, seq int64, p int) []byte {
	u, a := fmt.Sprintf("user-%d", p), fmt.Sprintf("anon-%d", p)
	ts := t0.Add(time.Duration(seq) * time.Millisecond)
	e := &profiles.Event{MessageID: fmt.Sprintf("bench-%d", seq), Timestamp: ts, ReceivedAt: ts, Source: "web"}
	switch r := rng.IntN(100); {
	case r < 50:
		e.Type, e.Event, e.AnonymousID = profiles.TypeTrack, "Product Viewed", a
		e.Properties = map[string]any{"product_id": fmt.Sprintf("sku-%d", rng.IntN(500)), "price": json.Number("19.90")}
	case r < 65:
		e.Type, e.Name, e.AnonymousID = profiles.TypePage, "Category", a
		e.Properties = map[string]any{"path": "/c/shoes"}
	case r < 85:
		e.Type, e.Event, e.UserID = profiles.TypeTrack, "Order Completed", u
		e.Properties = map[string]any{"order_id": e.MessageID, "revenue": json.Number("59.70"), "products": []any{map[string]any{"sku": "sku-1"}}}
	case r < 97:
		e.Type, e.UserID, e.AnonymousID = profiles.TypeIdentify, u, a
		e.Traits = map[string]any{"email": fmt.Sprintf("Person.%d@Example.com", p), "plan": "pro", "city": "Madrid"}
	default:
		e.Type, e.Event, e.UserID = profiles.TypeTrack, profiles.EventConsentUpdated, u
		e.Properties = map[string]any{"email": rng.IntN(2) == 0}
	}
	v, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return v
}

// benchRecords makes n records numbered from first, about benchPeople
// people drawn uniformly.
func benchRecords(seed uint64, first, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([][]byte, n)
	for i := range out {
		out[i] = benchRecord(rng, int64(first+i), rng.IntN(benchPeople))
	}
	return out
}

// processCPU is the CPU time (user and system) the process used so far:
// robust on a busy machine, where wall-clock time is mostly the others'.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchNATS is the NATS server of a capacity benchmark and its config:
// a stream and buckets of their own (so that several runs can share one
// server). By default it is one embedded server with JetStream on file
// storage; always makes it fsync every write before acknowledging it
// (sync_interval: always) instead of NATS's default (every 2 minutes).
// With CARTERA_BENCH_NATS set to a server's URL, that server (another
// process, with its own sync setting) is used instead, so that the CPU
// time reported is Cartera's alone; benchmarks that need an embedded
// server with SyncAlways are then skipped.
func benchNATS(b *testing.B, always bool) jetstream.Config {
	b.Helper()
	name := fmt.Sprintf("BENCH_%d", time.Now().UnixNano())
	cfg := jetstream.DefaultConfig()
	cfg.Stream, cfg.Subject, cfg.AckWait = name, "bench."+name, 30*time.Second
	if url := os.Getenv("CARTERA_BENCH_NATS"); url != "" {
		if always {
			b.Skip("CARTERA_BENCH_NATS: the external server's sync setting applies")
		}
		cfg.URL = url
		return cfg
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: b.TempDir(),
		NoLog: true, NoSigs: true, SyncAlways: always})
	if err != nil {
		b.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		b.Fatal("nats server did not start")
	}
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	cfg.URL = s.ClientURL()
	return cfg
}

// appendLog is what the append benchmarks append to: eventlog.Log or
// jetstream.Log.
type appendLog interface {
	Append(ctx context.Context, recs [][]byte) (first, last uint64, err error)
}

// The append benchmarks' load: appenders goroutines, each appending
// appendsEach batches.
const (
	benchAppenders = 16
	appendEvents   = 48_000 // events per sub-benchmark at batch=100
	appendCalls    = 6_400  // calls per sub-benchmark at batch=1
)

// measureAppends appends from benchAppenders goroutines and reports
// events/s, the latency of one Append (p50, p99) and the process's CPU
// time per event.
func measureAppends(b *testing.B, l appendLog, batch int) {
	b.Helper()
	calls := appendEvents / batch
	if batch == 1 {
		calls = appendCalls
	}
	each := calls / benchAppenders
	recs := make([][][]byte, benchAppenders)
	for w := range recs {
		recs[w] = benchRecords(uint64(w+1), w*each*batch, each*batch)
	}
	// Warm up: the stream and the connection exist, the first file is open.
	if _, _, err := l.Append(context.Background(), benchRecords(99, 1<<30, 10)); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	var lat []time.Duration
	var events int
	for range b.N {
		lats := make([][]time.Duration, benchAppenders)
		var failed atomic.Value
		cpu0, start := processCPU(b), time.Now()
		var wg sync.WaitGroup
		for w := range benchAppenders {
			wg.Go(func() {
				for i := range each {
					t := time.Now()
					if _, _, err := l.Append(context.Background(), recs[w][i*batch:(i+1)*batch]); err != nil {
						failed.Store(err)
						return
					}
					lats[w] = append(lats[w], time.Since(t))
				}
			})
		}
		wg.Wait()
		wall := time.Since(start)
		total += processCPU(b) - cpu0
		if err, ok := failed.Load().(error); ok {
			b.Fatal(err)
		}
		b.ReportMetric(float64(each*benchAppenders*batch)/wall.Seconds(), "events/s")
		for _, l := range lats {
			lat = append(lat, l...)
		}
		events += each * benchAppenders * batch
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return lat[int(q*float64(len(lat)-1))].Seconds() * 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(total.Microseconds())/float64(events), "cpu-µs/event")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAppend measures appending realistic event records from 16
// concurrent appenders, in batches of 1 and of 100, to the local event
// log (fsync per group commit) and to a JetStream stream of 64 partitions
// on one embedded server (R1), with NATS's default sync (every 2 minutes:
// acknowledged once written to the OS) and with sync_interval: always.
// Each Append returns once its records are durable as the log defines it.
func BenchmarkAppend(b *testing.B) {
	for _, kind := range []string{"eventlog", "jetstream-R1", "jetstream-R1-syncalways"} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("log=%s/batch=%d", kind, batch), func(b *testing.B) {
				var l appendLog
				switch kind {
				case "eventlog":
					el, err := eventlog.Open(b.TempDir(), eventlog.Options{})
					if err != nil {
						b.Fatal(err)
					}
					defer el.Close()
					l = el
				default:
					cfg := benchNATS(b, kind == "jetstream-R1-syncalways")
					cfg.Partitions = 64
					jl, err := jetstream.Open(context.Background(), cfg)
					if err != nil {
						b.Fatal(err)
					}
					defer jl.Close()
					l = jl
				}
				measureAppends(b, l, batch)
			})
		}
	}
}

// counter is a processor that counts the events committed.
type counter struct{ n atomic.Int64 }

func (c *counter) Begin(*bbolt.Tx) profiles.TxProcessor { return &counterTx{c: c} }

type counterTx struct {
	c *counter
	n int64
}

func (x *counterTx) Event(*profiles.Profile, *profiles.Event) ([]*profiles.Event, error) {
	x.n++
	return nil, nil
}
func (x *counterTx) Merged(*profiles.Profile, string) error { return nil }
func (x *counterTx) Erased(*profiles.Profile) error         { return nil }
func (x *counterTx) Flush() error                           { return nil }
func (x *counterTx) Done(committed bool) {
	if committed {
		x.c.n.Add(x.n)
	}
}

// applyEvents is how many events BenchmarkNodeApply applies per run.
const applyEvents = 20_000

// BenchmarkNodeApply measures applying 20,000 realistic events (about
// 10,000 people) already in the log, with the profiles processors only
// (and a counter), each commit fsynced, in three ways:
//
//   - single-node: one profiles.Store applying the local event log, as
//     `serve` does without --cluster;
//   - store-jetstream: one profiles.Store following the whole JetStream
//     stream, as `serve --cluster` does today;
//   - node-files/partitions=P: a Node holding all P partitions of the
//     stream through leases, each in a file of its own
//     (profiles.PartitionFiles), the P partitions applied concurrently.
//
// It reports events/s and the process's CPU time per event (which
// includes the embedded NATS server delivering the records).
func BenchmarkNodeApply(b *testing.B) {
	for _, mode := range []string{"single-node", "store-jetstream", "node-files/partitions=8", "node-files/partitions=64"} {
		b.Run(mode, func(b *testing.B) {
			var wall, cpu time.Duration
			for range b.N {
				w, c := applyOnce(b, mode)
				wall, cpu = wall+w, cpu+c
			}
			n := float64(b.N * applyEvents)
			b.ReportMetric(n/wall.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/event")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func applyOnce(b *testing.B, mode string) (wall, cpu time.Duration) {
	b.Helper()
	recs := benchRecords(1, 0, applyEvents)
	fill := func(l appendLog) {
		for len(recs) > 0 {
			k := min(500, len(recs))
			if _, _, err := l.Append(context.Background(), recs[:k]); err != nil {
				b.Fatal(err)
			}
			recs = recs[k:]
		}
	}
	seen := &counter{}
	openStore := func(path string) (*profiles.Store, error) {
		return profiles.Open(context.Background(), path, profiles.DefaultConfig(),
			profiles.Options{Now: clocktest.New(t0).Now, Processors: []profiles.Processor{seen}})
	}
	dir := b.TempDir()
	var start func()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	switch mode {
	case "single-node":
		el, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer el.Close()
		fill(el)
		st, err := openStore(filepath.Join(dir, "c.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		start = func() {
			if err := st.AttachLog(el); err != nil {
				b.Fatal(err)
			}
			go st.RunApplier(ctx)
		}
	default:
		cfg := benchNATS(b, false)
		cfg.Partitions = 8
		if mode == "node-files/partitions=64" {
			cfg.Partitions = 64
		}
		l, err := jetstream.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		fill(l)
		if mode == "store-jetstream" {
			st, err := openStore(filepath.Join(dir, "c.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			start = func() {
				if err := st.AttachLog(l); err != nil {
					b.Fatal(err)
				}
				go st.RunApplier(ctx)
			}
		} else {
			files := profiles.NewPartitionFiles(filepath.Join(dir, "node"), openStore)
			start = func() {
				n, err := jetstream.StartNode(context.Background(), l, files, jetstream.NodeConfig{ID: "bench", LeaseTTL: 5 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = n.Close() })
			}
		}
	}
	cpu0, t := processCPU(b), time.Now()
	start()
	deadline := t.Add(5 * time.Minute)
	for seen.n.Load() < applyEvents {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d events applied after 5 minutes", mode, seen.n.Load(), applyEvents)
		}
		time.Sleep(time.Millisecond)
	}
	wall, cpu = time.Since(t), processCPU(b)-cpu0
	if got := seen.n.Load(); got != applyEvents {
		b.Fatalf("%s: %d events applied, want %d", mode, got, applyEvents)
	}
	return wall, cpu
}
