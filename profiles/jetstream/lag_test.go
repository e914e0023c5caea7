package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// A router asks Admit with the partitions a batch is bound for before it
// appends it: refused, nothing of the batch is appended and Append says
// why; admitted, it goes.
func TestRouterAdmit(t *testing.T) {
	ns := startNATS(t)
	l := open(t, testConfig(ns.url()))
	var asked [][]int
	refuse := errors.New("partition lags")
	cfg := jetstream.RouterConfig{Identity: profiles.DefaultIdentityConfig(), Now: clocktest.New(t0).Now,
		Admit: func(parts []int) error {
			asked = append(asked, slices.Clone(parts))
			if len(asked) == 1 {
				return refuse
			}
			return nil
		}}
	r, err := jetstream.NewRouter(t.Context(), l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ana := &profiles.Event{Type: profiles.TypeTrack, Event: "Page Viewed", MessageID: "m1", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"}
	if _, _, err := r.Append(t.Context(), [][]byte{eventRecord(t, ana), eventRecord(t, ana)}); !errors.Is(err, refuse) {
		t.Fatalf("append refused by Admit: %v", err)
	}
	if n := l.Committed(); n != 0 {
		t.Fatalf("the log's last offset after a refused batch: %d, want none appended", n)
	}
	_, last, err := r.Append(t.Context(), [][]byte{eventRecord(t, ana)})
	if err != nil || last == 0 {
		t.Fatalf("append admitted: %d, %v", last, err)
	}
	pid, err := r.Lookup(t.Context(), profiles.Identifier{Kind: profiles.KindUserID, Value: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{l.ProfilePartition(pid)}
	if len(asked) != 2 || !slices.Equal(asked[0], want) || !slices.Equal(asked[1], want) {
		t.Fatalf("Admit asked %v, want ana's partition %v twice", asked, want)
	}
}

// slowApplier reads each partition one record at a time and waits for
// the test before it reads the next.
type slowApplier struct {
	step chan struct{}
	mu   sync.Mutex
	read map[int]int
}

func (a *slowApplier) ApplyPartition(ctx context.Context, p int, from uint64, log profiles.PartitionLog) error {
	for {
		recs, err := log.Read(ctx, from, 1)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.read[p] += len(recs)
		a.mu.Unlock()
		from = recs[len(recs)-1].Offset + 1
		select {
		case <-a.step:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// A node says how far behind each partition it holds is: the records of
// the partition the stream holds after the last its applier read.
func TestNodeLags(t *testing.T) {
	ns := startNATS(t)
	cfg := testConfig(ns.url())
	l := open(t, cfg)
	app := &slowApplier{step: make(chan struct{}), read: map[int]int{}}
	n, err := jetstream.StartNode(t.Context(), l, app, jetstream.NodeConfig{ID: "lags", LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var why string
	waitFor(t, "every partition held", &why, func() bool { return len(n.Held()) == cfg.Partitions })
	var recs [][]byte
	for range 10 {
		recs = append(recs, eventRecord(t, &profiles.Event{Type: profiles.TypeTrack, Event: "Page Viewed", MessageID: "m", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"}))
	}
	appended := time.Now()
	if _, _, err := l.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	p := l.Partition(recs[0])
	waitFor(t, "the first record read", &why, func() bool {
		app.mu.Lock()
		defer app.mu.Unlock()
		return app.read[p] == 1
	})
	// The age is the oldest unread record's, by the time JetStream
	// stored it: an hour after the append, about an hour.
	later := appended.Add(time.Hour)
	lags := n.Lags(t.Context(), later)
	if lags[p].Events != 9 || len(lags) != cfg.Partitions {
		t.Fatalf("lags %v, want partition %d 9 behind, and every partition held", lags, p)
	}
	if age := lags[p].Age; age < time.Hour-time.Minute || age > time.Hour {
		t.Fatalf("partition %d's lag is %s old an hour after its append, want about an hour", p, age)
	}
	if other := lags[(p+1)%cfg.Partitions]; other != (jetstream.Lag{}) {
		t.Fatalf("a partition with nothing behind lags %+v", other)
	}
	// The metrics show the age the last Lags found.
	key := fmt.Sprintf("cartera_cluster_partition_lag_seconds{partition=%d}", p)
	if age := nodeMetrics(t, n)[key]; age < 3540 || age > 3600 {
		t.Fatalf("cartera_cluster_partition_lag_seconds{partition=%d} = %v, want about an hour", p, age)
	}
	for range 9 {
		app.step <- struct{}{}
	}
	waitFor(t, "every record read", &why, func() bool {
		app.mu.Lock()
		defer app.mu.Unlock()
		return app.read[p] == 10
	})
	if lag := n.Lags(t.Context(), later)[p]; lag != (jetstream.Lag{}) {
		t.Fatalf("partition %d lags %+v after reading all, want nothing", p, lag)
	}
	close(app.step)
}
