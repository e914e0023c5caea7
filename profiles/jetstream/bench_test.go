package jetstream_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// BenchmarkApply compares applying b.N events already in the stream (64
// users, 8 partitions, one embedded NATS server with its default sync,
// the store fsyncing each commit) by one store
// following the whole stream against one node holding every partition
// through leases: a fence check and a checkpoint per partition and commit.
func BenchmarkApply(b *testing.B) {
	for _, mode := range []string{"whole-stream", "owned-partitions"} {
		b.Run(mode, func(b *testing.B) {
			ns := startNATSB(b)
			cfg := testConfig(ns)
			cfg.Partitions = testPartitions
			l, err := jetstream.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var recs [][]byte
			for i := range b.N {
				recs = append(recs, trackEvent("u"+string(rune('a'+i%64)), i))
				if len(recs) == 500 || i == b.N-1 {
					if _, _, err := l.Append(context.Background(), recs); err != nil {
						b.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			seen := &applied{n: map[string]int{}}
			st, err := profiles.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), profiles.DefaultConfig(),
				profiles.Options{Now: clocktest.New(t0).Now, Processors: []profiles.Processor{seen}})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			b.ResetTimer()
			start := time.Now()
			switch mode {
			case "whole-stream":
				if err := st.AttachLog(l); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				go st.RunApplier(ctx)
				defer cancel()
			default:
				n, err := jetstream.StartNode(context.Background(), l, st, jetstream.NodeConfig{ID: "bench", LeaseTTL: 2 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				defer n.Close()
			}
			for {
				seen.mu.Lock()
				got := len(seen.n)
				seen.mu.Unlock()
				if got >= b.N {
					break
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

func startNATSB(b *testing.B) string {
	b.Helper()
	s, err := newNATSServer(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}
