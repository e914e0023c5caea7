package profiles

import (
	"cartera/internal/clocktest"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/bbolt"
)

func TestHotProfilesLRU(t *testing.T) {
	rec := func(id string) []byte { return []byte("record of " + id) }
	type step struct {
		op   string // keep, take, drop
		id   string
		rec  []byte // take: the record in the file (default rec(id))
		want bool   // take: a profile comes back
	}
	tests := []struct {
		name  string
		max   int
		steps []step
		left  int
	}{
		{"taken once", 3, []step{{op: "keep", id: "a"}, {op: "take", id: "a", want: true}, {op: "take", id: "a"}}, 0},
		{"changed record", 3, []step{{op: "keep", id: "a"}, {op: "take", id: "a", rec: []byte("written elsewhere")}}, 0},
		{"least recent goes", 2, []step{{op: "keep", id: "a"}, {op: "keep", id: "b"}, {op: "keep", id: "c"}, {op: "take", id: "a"}, {op: "take", id: "b", want: true}, {op: "take", id: "c", want: true}}, 0},
		{"kept again is recent", 2, []step{{op: "keep", id: "a"}, {op: "keep", id: "b"}, {op: "keep", id: "a"}, {op: "keep", id: "c"}, {op: "take", id: "b"}, {op: "take", id: "a", want: true}}, 1},
		{"dropped", 3, []step{{op: "keep", id: "a"}, {op: "keep", id: "b"}, {op: "drop", id: "a"}, {op: "take", id: "a"}}, 1},
		{"drop the only one", 1, []step{{op: "keep", id: "a"}, {op: "drop", id: "a"}, {op: "keep", id: "b"}, {op: "take", id: "b", want: true}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHotProfiles(tc.max, NewMetrics(nil))
			for i, s := range tc.steps {
				switch s.op {
				case "keep":
					h.keep(&Profile{ID: s.id}, rec(s.id))
				case "drop":
					h.drop(s.id)
				case "take":
					r := s.rec
					if r == nil {
						r = rec(s.id)
					}
					p := h.take(s.id, r)
					if (p != nil) != s.want {
						t.Fatalf("step %d: take %s = %v, want a profile: %v", i, s.id, p, s.want)
					}
					if p != nil && p.ID != s.id {
						t.Fatalf("step %d: take %s gave profile %s", i, s.id, p.ID)
					}
				}
				if n := h.len(); n > tc.max {
					t.Fatalf("step %d: %d held, bound %d", i, n, tc.max)
				}
			}
			if n := h.len(); n != tc.left {
				t.Errorf("%d held at the end, want %d", n, tc.left)
			}
		})
	}
	var none *hotProfiles = newHotProfiles(0, NewMetrics(nil))
	none.keep(&Profile{ID: "a"}, rec("a"))
	if p := none.take("a", rec("a")); p != nil || none.len() != 0 {
		t.Errorf("a cache of size 0 held a profile")
	}
}

// The same events give the same profiles with the cache as without it:
// what the writer keeps decoded behaves as the record it wrote. The events
// are the ingest benchmark's (browsing, orders, identifies that merge,
// consent), in many small commits so that people come back often.
func TestHotProfilesSameAsDecoding(t *testing.T) {
	run := func(hot int) (map[string]*Profile, *Metrics) {
		cfg := hotConfig(hot)
		m := NewMetrics(nil)
		st, err := Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), cfg,
			Options{Now: clocktest.New(t0).Now, Rand: rand.NewChaCha8([32]byte{7}), Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		var seq int64
		for range 300 {
			batch := make([]*Event, 10)
			for i := range batch {
				seq++
				batch[i] = benchEventAmong(rng, seq, 100)
			}
			if _, err := st.Ingest(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
		}
		out := map[string]*Profile{}
		err = st.db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketProfiles).ForEach(func(k, v []byte) error {
				if len(k) != idLen {
					return nil // a sidecar or a messageId
				}
				var p Profile
				if err := decodeProfile(v, &p); err != nil {
					return fmt.Errorf("decode %s: %w", k, err)
				}
				out[string(k)] = &p
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		// Whatever is held is what the file says.
		if st.hot != nil {
			st.hot.mu.Lock()
			for id, e := range st.hot.m {
				if !reflect.DeepEqual(e.p, out[id]) {
					t.Errorf("profile %s held decoded differs from its record:\nheld %+v\nfile %+v", id, e.p, out[id])
				}
			}
			st.hot.mu.Unlock()
		}
		return out, m
	}
	plain, _ := run(0)
	cached, m := run(100)
	if len(plain) == 0 || len(plain) != len(cached) {
		t.Fatalf("%d profiles without the cache, %d with it", len(plain), len(cached))
	}
	for id, p := range plain {
		if !reflect.DeepEqual(p, cached[id]) {
			t.Errorf("profile %s differs with the cache:\nwithout %+v\nwith    %+v", id, p, cached[id])
		}
	}
	hits := testutil.ToFloat64(m.HotReads.WithLabelValues("hit"))
	misses := testutil.ToFloat64(m.HotReads.WithLabelValues("miss"))
	t.Logf("hits %v, misses %v", hits, misses)
	if hits < 1000 || misses < 100 {
		t.Errorf("hits %v, misses %v: the run should have used and outgrown the cache of 100", hits, misses)
	}
}

// A record written by anything but the writer's flush (here, straight into
// the file) is decoded again, not overwritten with what was held.
func TestHotProfilesSeeRecordsWrittenElsewhere(t *testing.T) {
	ts := openStore(t, hotConfig(100))
	ts.ingest(identify("m1", user("u1"), traits("plan", "free")))
	p := ts.lookup(KindUserID, "u1")
	if ts.hot.len() != 1 {
		t.Fatalf("%d profiles held after one event, want 1", ts.hot.len())
	}
	p.Traits["plan"] = Trait{Value: "pro", At: t0, Source: "web"}
	err := ts.db.Update(func(tx *bbolt.Tx) error {
		v, err := encodeProfile(p, nil)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketProfiles).Put([]byte(p.ID), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.ingest(track("m2", "Product Viewed", user("u1")))
	if got := ts.lookup(KindUserID, "u1").Traits["plan"].Value; got != "pro" {
		t.Errorf("plan = %v after an event, want the record's pro (the held copy was used stale)", got)
	}
	if n := testutil.ToFloat64(ts.metrics.HotReads.WithLabelValues("stale")); n != 1 {
		t.Errorf("stale reads = %v, want 1", n)
	}
}

// An erasure leaves no decoded copy of the person in memory.
func TestHotProfilesEraseDrops(t *testing.T) {
	ts := openStore(t, hotConfig(100))
	ts.ingest(identify("m1", user("u1"), traits("email", "ana@example.com")), identify("m2", user("u2")))
	if ts.hot.len() != 2 {
		t.Fatalf("%d held, want 2", ts.hot.len())
	}
	pid := ts.lookup(KindUserID, "u1").ID
	if _, err := ts.Erase(Identifier{Kind: KindUserID, Value: "u1"}, false); err != nil {
		t.Fatal(err)
	}
	ts.hot.mu.Lock()
	_, held := ts.hot.m[pid]
	n := len(ts.hot.m)
	ts.hot.mu.Unlock()
	if held || n != 1 {
		t.Errorf("after the erasure: erased person held %v, %d held (want only u2)", held, n)
	}
}

// hotConfig is the default config with a cache of n hot profiles.
func hotConfig(n int) Config {
	cfg := DefaultConfig()
	cfg.HotProfiles = n
	return cfg
}
