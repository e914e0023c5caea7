package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// BenchmarkReown times moving a partition that holds N profiles to a new
// owner after its node dies, on one embedded NATS server (file storage,
// NATS's default sync; the partition files fsync each commit): the dead
// node's periodic snapshot (written to a local file,
// then uploaded to the Object Store), the new owner's restore (download
// into its partition file) and its replay of the events applied after the
// snapshot (tail: N/10). Run it once per size:
//
//	go test -run '^$' -bench BenchmarkReown -benchtime 1x ./profiles/jetstream
//
// CARTERA_REOWN_SIZES (comma-separated) replaces the sizes 10000,100000.
func BenchmarkReown(b *testing.B) {
	sizes := []int{10_000, 100_000}
	if v := os.Getenv("CARTERA_REOWN_SIZES"); v != "" {
		sizes = nil
		for _, f := range splitComma(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("CARTERA_REOWN_SIZES: %q is not a number", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("profiles=%d", n), func(b *testing.B) {
			var sum map[jetstream.Step]time.Duration
			var bytes int64
			var lapse time.Duration
			for range b.N {
				t, sz, wait := reownOnce(b, n, n/10)
				if sum == nil {
					sum = map[jetstream.Step]time.Duration{}
				}
				for k, v := range t {
					sum[k] += v
				}
				bytes, lapse = sz, lapse+wait
			}
			for _, st := range []jetstream.Step{jetstream.StepSnapshotWrite, jetstream.StepSnapshotUpload, jetstream.StepRestore, jetstream.StepCaughtUp} {
				b.ReportMetric(sum[st].Seconds()/float64(b.N), string(st)+"-s")
			}
			b.ReportMetric(lapse.Seconds()/float64(b.N), "claimed-after-kill-s")
			b.ReportMetric(float64(bytes)/1e6, "snapshot-MB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// reownOnce runs the scenario once: one partition, n profiles, a snapshot
// of them, tail more events, the owner killed, a new node claiming.
func reownOnce(b *testing.B, n, tail int) (map[jetstream.Step]time.Duration, int64, time.Duration) {
	b.Helper()
	url := startNATSB(b)
	cfg := testConfig(url)
	cfg.Partitions, cfg.AckWait = 1, 30*time.Second
	ingest, err := jetstream.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer ingest.Close()
	appendAll := func(from, count int) {
		var recs [][]byte
		for i := from; i < from+count; i++ {
			e := &profiles.Event{Type: "identify", MessageID: "m" + strconv.Itoa(i), UserID: "user-" + strconv.Itoa(i%n),
				Traits: map[string]any{"plan": "gold", "tier": i % 5, "country": "ES"}, Timestamp: t0, ReceivedAt: t0, Source: "web"}
			v, err := json.Marshal(e)
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, v)
			if len(recs) == 1000 || i == from+count-1 {
				if _, _, err := ingest.Append(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
				recs = recs[:0]
			}
		}
	}
	appendAll(0, n)
	dir := b.TempDir()
	startOwner := func(id string, snaps jetstream.SnapshotConfig) (*jetstream.Log, *jetstream.Node, *profiles.PartitionFiles) {
		l, err := jetstream.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		files := profiles.NewPartitionFiles(filepath.Join(dir, id), func(path string) (*profiles.Store, error) {
			return profiles.Open(context.Background(), path, profiles.DefaultConfig(), profiles.Options{Now: clocktest.New(t0).Now})
		})
		// Warnings (a snapshot that failed) go to stderr: the benchmark
		// would otherwise wait for a snapshot that is not coming.
		lg := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		nd, err := jetstream.StartNode(context.Background(), l, files, jetstream.NodeConfig{ID: id, LeaseTTL: 2 * time.Second, Snapshots: snaps, Logger: lg})
		if err != nil {
			b.Fatal(err)
		}
		return l, nd, files
	}
	waitFor := func(what string, cond func() bool) {
		// 10 minutes, and a millisecond more per profile: 1 M profiles
		// take minutes to apply on a loaded machine.
		deadline := time.Now().Add(10*time.Minute + time.Duration(n)*time.Millisecond)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("never: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	applied := func(files *profiles.PartitionFiles) uint64 {
		st, ok := files.Store(0)
		if !ok {
			return 0
		}
		return st.PartitionApplied(0)
	}
	timed := func(nd *jetstream.Node, step jetstream.Step) (jetstream.Timing, bool) {
		for _, t := range nd.Timings() {
			if t.Step == step {
				return t, true
			}
		}
		return jetstream.Timing{}, false
	}

	// The first owner applies the n events, snapshots once they are in
	// (Events: n), then applies the tail.
	la, a, aFiles := startOwner("a", jetstream.SnapshotConfig{Events: n, Interval: time.Hour})
	waitFor("a applies the profiles", func() bool { return applied(aFiles) >= uint64(n) })
	waitFor("a's snapshot", func() bool { _, ok := timed(a, jetstream.StepSnapshotUpload); return ok })
	appendAll(n, tail)
	last := uint64(n + tail)
	waitFor("a applies the tail", func() bool { return applied(aFiles) >= last })
	out := map[jetstream.Step]time.Duration{}
	write, _ := timed(a, jetstream.StepSnapshotWrite)
	up, _ := timed(a, jetstream.StepSnapshotUpload)
	out[write.Step], out[up.Step] = write.Took, up.Took

	// a dies; b, started at once, claims the partition once a's lease
	// lapses, restores the snapshot and replays the tail.
	_ = la.Close()
	killed := time.Now()
	_ = a.Close()
	lb, nb, bFiles := startOwner("b", jetstream.SnapshotConfig{Events: 10 * n, Interval: time.Hour})
	defer lb.Close()
	defer nb.Close()
	var claimed time.Duration
	waitFor("b claims the partition", func() bool {
		if len(nb.Held()) == 1 {
			claimed = time.Since(killed)
			return true
		}
		return false
	})
	waitFor("b catches up", func() bool { _, ok := timed(nb, jetstream.StepCaughtUp); return ok })
	rs, ok := timed(nb, jetstream.StepRestore)
	if !ok {
		b.Fatal("b did not restore a snapshot")
	}
	cu, _ := timed(nb, jetstream.StepCaughtUp)
	if got := applied(bFiles); got < last {
		b.Fatalf("b caught up at %d, want %d", got, last)
	}
	if st, ok := bFiles.Store(0); !ok || st.ProfileCount() != int64(n) {
		b.Fatalf("b's partition holds %d profiles, want %d", st.ProfileCount(), n)
	}
	out[rs.Step], out[cu.Step] = rs.Took, cu.Took
	b.Logf("profiles=%d tail=%d snapshot %d bytes at offset %d: write %s, upload %s; claimed %s after the kill; restore %s, replay to %d %s",
		n, tail, up.Bytes, up.Offset, write.Took.Round(time.Millisecond), up.Took.Round(time.Millisecond), claimed.Round(time.Millisecond),
		rs.Took.Round(time.Millisecond), cu.Offset, cu.Took.Round(time.Millisecond))
	return out, up.Bytes, claimed
}
