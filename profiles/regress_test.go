package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// Trait numbers keep their JSON form across a restart, so a condition sees
// the same int or double before and after.
func TestTraitNumbersSurviveRestart(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(identify("m1", user("u1"), traits("age", json.Number("30"), "score", json.Number("0.5"))))
	ts.reopen()
	p := ts.lookup(KindUserID, "u1")
	for k, want := range map[string]json.Number{"age": "30", "score": "0.5"} {
		if got, ok := p.Traits[k].Value.(json.Number); !ok || got != want {
			t.Errorf("traits.%s = %#v after restart, want json.Number(%s)", k, p.Traits[k].Value, want)
		}
	}
}

func TestDecodeRefusesOutOfRangeNumbers(t *testing.T) {
	_, err := Decode([]byte(`{"userId":"u1","event":"Order Completed","properties":{"revenue":1e400}}`), DecodeOptions{Type: TypeTrack})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Error() != "properties.revenue: number 1e400 is out of range" {
		t.Fatalf("err = %v", err)
	}
	plan := &Plan{Mode: PlanStrict, Events: map[string]EventRule{"Scored": {Properties: map[string]PropertyRule{"points": {Type: "number"}}}}}
	e, err := Decode([]byte(`{"userId":"u1","event":"Scored","properties":{"points":-1e999}}`), DecodeOptions{Type: TypeTrack})
	if err != nil {
		t.Fatal(err)
	}
	if vs := plan.Check(e); len(vs) != 1 || vs[0].Field != "properties.points" {
		t.Fatalf("violations = %v, want properties.points", vs)
	}
}

// Ingest after Close answers ErrClosed rather than waiting forever.
func TestIngestAfterCloseReturns(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ts.Ingest(ctx, []*Event{identify("m1", user("u1"))}); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	ts.open() // for the cleanup's Close
}

// A declared kind left out of the priority list still ranks above
// anonymous ids, which are the least trusted.
func TestUnlistedKindRanksBeforeAnonymousID(t *testing.T) {
	cfg := DefaultIdentityConfig()
	cfg.Kinds = []KindConfig{{Name: "loyalty_card", Paths: []string{"traits.loyalty_card"}}}
	r := newResolver(cfg)
	ids := r.extract(&Event{AnonymousID: "a1", Traits: map[string]any{"loyalty_card": "C-1"}})
	if len(ids) != 2 || ids[0].Kind != "loyalty_card" || ids[1].Kind != KindAnonymousID {
		t.Fatalf("order = %v, want loyalty_card before anonymous_id", ids)
	}
}

// Lookups and alias trim ids as ingestion does.
func TestIDsAreTrimmedEverywhere(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.ingest(track("m1", "Product Viewed", anon("a1")))
	ts.ingest(alias("m2", "u1", " a1 "))
	p := ts.lookup(KindUserID, " u1 ")
	if q := ts.lookup(KindAnonymousID, "a1"); q.ID != p.ID {
		t.Fatalf("alias with a spaced previousId did not merge: %s vs %s", q.ID, p.ID)
	}
}

// failOn is a processor that fails on one event name.
type failOn struct{ name string }

func (f failOn) Begin(*bbolt.Tx) TxProcessor { return f }
func (f failOn) Event(_ *Profile, e *Event) ([]*Event, error) {
	if e.Event == f.name {
		return nil, errors.New("boom")
	}
	return nil, nil
}
func (failOn) Merged(*Profile, string) error { return nil }
func (failOn) Erased(*Profile) error         { return nil }
func (failOn) Flush() error                  { return nil }
func (failOn) Done(bool)                     {}

// A request whose event fails does not fail the others of its group commit.
func TestOneBadRequestDoesNotFailItsNeighbours(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	ts.Use(failOn{name: "Boom"})
	good := &commitReq{events: []*Event{track("g1", "Fine", user("u1"))}, done: make(chan error, 1)}
	good.results = make([]Result, 1)
	bad := &commitReq{events: []*Event{track("b1", "Boom", user("u2"))}, done: make(chan error, 1)}
	bad.results = make([]Result, 1)
	ts.commit([]*commitReq{good, bad})
	if err := <-good.done; err != nil {
		t.Fatalf("good request failed with its neighbour: %v", err)
	}
	if err := <-bad.done; err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("bad request = %v, want its error", err)
	}
	ts.lookup(KindUserID, "u1")
	ts.notFound(KindUserID, "u2")
	if !ts.seen("g1") || ts.seen("b1") {
		t.Fatal("dedupe keys: the good one must be kept, the bad one not")
	}
}

// flushFailOn is a processor whose Flush fails when the transaction saw
// an event of one name (a pass that fails to render, say); it counts the
// transactions it took part in.
type flushFailOn struct {
	name string
	txs  *int
}

type flushFailTx struct {
	name string
	bad  bool
}

func (f flushFailOn) Begin(*bbolt.Tx) TxProcessor { *f.txs++; return &flushFailTx{name: f.name} }
func (f *flushFailTx) Event(_ *Profile, e *Event) ([]*Event, error) {
	f.bad = f.bad || e.Event == f.name
	return nil, nil
}
func (*flushFailTx) Merged(*Profile, string) error { return nil }
func (*flushFailTx) Erased(*Profile) error         { return nil }
func (f *flushFailTx) Flush() error {
	if f.bad {
		return errors.New("render pass: boom")
	}
	return nil
}
func (*flushFailTx) Done(bool) {}

// An error that a processor's Flush returns fails only the request that
// caused it; the others of the group commit go in batches, not one
// transaction (and fsync) each.
func TestFlushErrorFailsOnlyItsRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		requests int
		bad      int // index of the bad request
		maxTxs   int
	}{
		{"bad first of 8", 8, 0, 7},
		{"bad last of 8", 8, 7, 7},
		{"bad in the middle of 16", 16, 9, 9},
		{"bad alone", 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := openStore(t, DefaultConfig())
			var txs int
			ts.Use(flushFailOn{name: "Render Fails", txs: &txs})
			batch := make([]*commitReq, tc.requests)
			for i := range batch {
				name := "Fine"
				if i == tc.bad {
					name = "Render Fails"
				}
				batch[i] = &commitReq{events: []*Event{track(fmt.Sprintf("m%d", i), name, user(fmt.Sprintf("u%d", i)))}, results: make([]Result, 1), done: make(chan error, 1)}
			}
			ts.commit(batch)
			for i, r := range batch {
				err := <-r.done
				switch {
				case i == tc.bad && (err == nil || !strings.Contains(err.Error(), "render pass: boom")):
					t.Errorf("the bad request answered %v, want its flush error", err)
				case i != tc.bad && err != nil:
					t.Errorf("request %d failed with its neighbour: %v", i, err)
				}
				if i == tc.bad {
					ts.notFound(KindUserID, fmt.Sprintf("u%d", i))
				} else {
					ts.lookup(KindUserID, fmt.Sprintf("u%d", i))
				}
			}
			if txs > tc.maxTxs {
				t.Errorf("%d transactions for %d requests, want at most %d (halving, not one each)", txs, tc.requests, tc.maxTxs)
			}
		})
	}
}

// An event that fails to apply leaves its neighbours to commit together.
func TestApplyErrorLeavesOthersInOneBatch(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	var txs int
	ts.Use(failOn{name: "Boom"}, flushFailOn{name: "never", txs: &txs})
	batch := make([]*commitReq, 6)
	for i := range batch {
		name := "Fine"
		if i == 2 {
			name = "Boom"
		}
		batch[i] = &commitReq{events: []*Event{track(fmt.Sprintf("m%d", i), name, user(fmt.Sprintf("u%d", i)))}, results: make([]Result, 1), done: make(chan error, 1)}
	}
	ts.commit(batch)
	for i, r := range batch {
		if err := <-r.done; (err != nil) != (i == 2) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if txs != 2 {
		t.Errorf("%d transactions, want 2: the failed one, then the five good requests together", txs)
	}
}

// inTx counts the write transactions in progress.
type inTx struct{ n *atomic.Int64 }

func (c inTx) Begin(*bbolt.Tx) TxProcessor            { c.n.Add(1); return c }
func (inTx) Event(*Profile, *Event) ([]*Event, error) { return nil, nil }
func (inTx) Merged(*Profile, string) error            { return nil }
func (inTx) Erased(*Profile) error                    { return nil }
func (inTx) Flush() error                             { return nil }
func (c inTx) Done(bool)                              { c.n.Add(-1) }

// Between runs its function on the writer with no transaction in progress,
// after everything acknowledged before it was called.
func TestBetweenRunsBetweenCommits(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	var n atomic.Int64
	ts.Use(inTx{&n})
	ctx := context.Background()
	var wg sync.WaitGroup
	var during atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				ts.ingest(track(fmt.Sprintf("m%d-%d", w, i), "Fine", user(fmt.Sprintf("u%d", w))))
			}
		})
	}
	for range 20 {
		wg.Go(func() {
			if err := ts.Between(ctx, func() { during.Add(n.Load()) }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if during.Load() != 0 {
		t.Errorf("Between ran while a transaction was in progress")
	}
	ts.ingest(track("last", "Fine", user("z")))
	var seen bool
	if err := ts.Between(ctx, func() { seen = ts.seen("last") }); err != nil || !seen {
		t.Errorf("Between did not run after what was acknowledged before it: %v", err)
	}
}
