package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// BenchmarkMergeAcrossPartitions times merges of two people held in
// different partitions (one node holding all 8, a file each, one embedded
// NATS server), each person having sent events events before: from the
// identify's Append to the survivor holding the loser's state and every
// event (the loser among the profiles the survivor merged from). It reports the time per merge and the size of the MergeIn record
// that carried the loser's state.
func BenchmarkMergeAcrossPartitions(b *testing.B) {
	for _, events := range []int{1, 100, 1000} {
		b.Run("events="+strconv.Itoa(events), func(b *testing.B) {
			ctx := context.Background()
			cfg := testConfig(startNATSB(b))
			cfg.Partitions = testPartitions
			l := open(b, cfg)
			files := profiles.NewPartitionFiles(b.TempDir(), func(path string) (*profiles.Store, error) {
				return profiles.Open(ctx, path, profiles.DefaultConfig(), profiles.Options{Now: clocktest.New(t0).Now})
			})
			n, err := jetstream.StartNode(ctx, l, files, jetstream.NodeConfig{ID: "bench", LeaseTTL: 2 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			for len(files.Open()) < testPartitions {
				time.Sleep(10 * time.Millisecond)
			}
			r, err := jetstream.NewRouter(ctx, l, jetstream.RouterConfig{Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now})
			if err != nil {
				b.Fatal(err)
			}
			find := func(id profiles.Identifier) *profiles.Profile {
				for _, p := range files.Open() {
					if st, ok := files.Store(p); ok {
						if prof, err := st.Lookup(id); err == nil {
							return prof
						}
					}
				}
				return nil
			}
			waitFor := func(what string, cond func() bool) {
				deadline := time.Now().Add(time.Minute)
				for !cond() {
					if time.Now().After(deadline) {
						b.Fatalf("never: %s", what)
					}
					time.Sleep(200 * time.Microsecond)
				}
			}
			send := func(recs [][]byte) {
				for len(recs) > 0 {
					k := min(100, len(recs))
					if _, _, err := r.Append(ctx, recs[:k]); err != nil {
						b.Fatal(err)
					}
					recs = recs[k:]
				}
			}
			nc, err := nats.Connect(cfg.URL)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := njs.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			stream, err := js.Stream(ctx, cfg.Stream)
			if err != nil {
				b.Fatal(err)
			}
			var took time.Duration
			var size int
			j := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// Two people in different partitions, with their events.
				var user, anon, loser string
				for {
					j++
					user, anon = fmt.Sprintf("user-%d", j), fmt.Sprintf("anon-%d", j)
					var recs [][]byte
					for k := range events {
						recs = append(recs, visitorEvent(fmt.Sprintf("m-%s-%d", user, k), user, ""), visitorEvent(fmt.Sprintf("m-%s-%d", anon, k), "", anon))
					}
					send(recs)
					up, _ := r.Resolve(ctx, &profiles.Event{UserID: user})
					ap, _ := r.Resolve(ctx, &profiles.Event{AnonymousID: anon})
					if partitionOf(l, up) != partitionOf(l, ap) {
						loser = max(up, ap)
						break
					}
				}
				uid := profiles.Identifier{Kind: profiles.KindUserID, Value: user}
				aid := profiles.Identifier{Kind: profiles.KindAnonymousID, Value: anon}
				waitFor("both people applied", func() bool {
					u, a := find(uid), find(aid)
					return u != nil && a != nil && u.EventCount == events && a.EventCount == events
				})
				info, err := stream.Info(ctx)
				if err != nil {
					b.Fatal(err)
				}
				before := info.State.LastSeq
				b.StartTimer()
				start := time.Now()
				send([][]byte{visitorEvent("m-identify-"+user, user, anon)})
				var survivor string
				waitFor("merged", func() bool {
					p := find(uid)
					// (A profile keeps its 1,000 newest events.)
					if p != nil && slices.Contains(p.MergedFrom, loser) && p.EventCount == min(2*events+1, profiles.DefaultConfig().MaxEvents) {
						survivor = p.ID
						return true
					}
					return false
				})
				took += time.Since(start)
				b.StopTimer()
				size = mergeInSize(ctx, b, stream, before, l.PartitionSubject(partitionOf(l, survivor)), loser)
				b.StartTimer()
			}
			b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "ms/merge")
			b.ReportMetric(float64(size), "mergein-bytes")
		})
	}
}

// BenchmarkRouterAppend compares appending events of 64 known people in
// batches of 100 straight to the log (partitioned by userId) and through
// the router: each event's identifiers looked up in the identity index
// first, one KV read per identifier, or found in the router's cache; and
// events each of a person the index has not seen (router-new: the
// identifier linked, the profile's count kept).
func BenchmarkRouterAppend(b *testing.B) {
	for _, mode := range []string{"log", "router", "router-cached", "router-new"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			cfg := testConfig(startNATSB(b))
			cfg.Partitions = testPartitions
			l := open(b, cfg)
			rcfg := jetstream.RouterConfig{Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now}
			if mode == "router-cached" {
				rcfg.CacheTTL = time.Hour
			}
			r, err := jetstream.NewRouter(ctx, l, rcfg)
			if err != nil {
				b.Fatal(err)
			}
			var app interface {
				Append(context.Context, [][]byte) (uint64, uint64, error)
			} = l
			if mode != "log" {
				app = r
				for u := range 64 {
					if _, _, err := r.Append(ctx, [][]byte{trackEvent("u"+strconv.Itoa(u), -1)}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ResetTimer()
			var recs [][]byte
			for i := range b.N {
				user := "u" + strconv.Itoa(i%64)
				if mode == "router-new" {
					user = "new-" + strconv.Itoa(i) // a person the index has not seen
				}
				recs = append(recs, trackEvent(user, i))
				if len(recs) == 100 || i == b.N-1 {
					if _, _, err := app.Append(ctx, recs); err != nil {
						b.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// mergeInSize is the size of the MergeIn record of loser on subject, the
// first after sequence after (the records that follow it on the
// survivor's partition, forwarded events, are not it).
func mergeInSize(ctx context.Context, b *testing.B, stream njs.Stream, after uint64, subject, loser string) int {
	b.Helper()
	info, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for seq := after + 1; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			b.Fatal(err)
		}
		if m.Subject != subject {
			continue
		}
		if _, body := profiles.RecordRoute(m.Data); profiles.IsMergeBody(body) {
			var rec profiles.MergeRecord
			if err := json.Unmarshal(body[1:], &rec); err == nil && rec.Op == profiles.MergeIn && rec.Loser == loser {
				return len(m.Data)
			}
		}
	}
	b.Fatalf("no MergeIn of %s on %s after sequence %d", loser, subject, after)
	return 0
}
