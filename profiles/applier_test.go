package profiles

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/internal/clocktest"
	"cartera/profiles/eventlog"
)

// logStore is a testStore whose Append goes through an event log in the
// same temporary directory, with the applier running.
type logStore struct {
	*testStore
	dir    string
	elog   *eventlog.Log
	stop   func()
	logs   *syncBuffer
	procs  []Processor
	noRun  bool
	closed bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openLogStore(t *testing.T, cfg Config, procs ...Processor) *logStore {
	t.Helper()
	dir := t.TempDir()
	ls := &logStore{
		testStore: &testStore{t: t, path: filepath.Join(dir, "cartera.db"), cfg: cfg, clock: nil, metrics: NewMetrics(nil)},
		dir:       dir, logs: &syncBuffer{}, procs: procs,
	}
	ls.testStore.clock = clocktest.New(t0)
	ls.start()
	t.Cleanup(ls.shutdown)
	return ls
}

// start opens the store and the log and runs the applier (unless noRun).
func (ls *logStore) start() {
	t := ls.t
	t.Helper()
	st, err := Open(context.Background(), ls.path, ls.cfg, Options{Now: ls.clock.Now, Metrics: ls.metrics, Processors: ls.procs,
		Logger: slog.New(slog.NewJSONHandler(ls.logs, nil))})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	l, err := eventlog.Open(filepath.Join(ls.dir, "events"), eventlog.Options{FirstOffset: st.AppliedOffset() + 1, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AttachLog(l); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if !ls.noRun {
		wg.Go(func() { st.RunApplier(ctx) })
	}
	ls.Store, ls.elog, ls.closed = st, l, false
	ls.stop = func() { cancel(); wg.Wait() }
}

func (ls *logStore) shutdown() {
	if ls.closed {
		return
	}
	ls.closed = true
	ls.stop()
	if err := ls.Store.Close(); err != nil {
		ls.t.Errorf("close store: %v", err)
	}
	if err := ls.elog.Close(); err != nil {
		ls.t.Errorf("close log: %v", err)
	}
}

func (ls *logStore) restart() {
	ls.t.Helper()
	ls.shutdown()
	ls.start()
}

// appendWait acknowledges events through the log and waits until they are applied.
func (ls *logStore) appendWait(evs ...*Event) uint64 {
	ls.t.Helper()
	off, err := ls.Append(context.Background(), evs)
	if err != nil {
		ls.t.Fatalf("append: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ls.WaitApplied(ctx, off); err != nil {
		ls.t.Fatalf("wait applied: %v", err)
	}
	return off
}

func TestAppendAcknowledgesThenApplies(t *testing.T) {
	ls := openLogStore(t, DefaultConfig())
	off := ls.appendWait(
		identify("m1", user("u1"), traits("email", "Ana@Example.com", "plan", "pro")),
		track("m2", "Order Completed", user("u1")),
	)
	if off != 2 {
		t.Fatalf("offset of the second event %d, want 2", off)
	}
	p := ls.lookup(KindEmail, "ana@example.com")
	if p.EventCount != 2 || p.Traits["plan"].Value != "pro" {
		t.Fatalf("profile after applying from the log: events %d traits %v", p.EventCount, p.Traits)
	}
	if ls.AppliedOffset() != 2 || ls.LogCommitted() != 2 {
		t.Fatalf("applied %d committed %d, want 2 and 2", ls.AppliedOffset(), ls.LogCommitted())
	}
	if n, age := ls.Lag(); n != 0 || age != 0 {
		t.Fatalf("lag %d %s after applying, want none", n, age)
	}
	// The offset is stored with the state: a restart applies nothing again.
	ls.restart()
	if ls.AppliedOffset() != 2 {
		t.Fatalf("applied offset after restart %d, want 2", ls.AppliedOffset())
	}
	ls.appendWait(track("m3", "Order Completed", user("u1")))
	if p := ls.lookup(KindUserID, "u1"); p.EventCount != 3 {
		t.Fatalf("events after restart and one more: %d, want 3", p.EventCount)
	}
	if got := ls.messageIDs(p.ID, 0); strings.Join(got, ",") != "m3,m2,m1" {
		t.Fatalf("events %v, want m3,m2,m1", got)
	}
}

// Events acknowledged but not applied before a stop are applied at the next
// start, once each.
func TestRestartAppliesWhatWasAcknowledged(t *testing.T) {
	cfg := DefaultConfig()
	ls := openLogStore(t, cfg)
	ls.shutdown()
	ls.noRun = true
	ls.start()
	var evs []*Event
	for i := range 50 {
		evs = append(evs, track(fmt.Sprintf("m%d", i), "Viewed", user(fmt.Sprintf("u%d", i%5))))
	}
	off, err := ls.Append(context.Background(), evs)
	if err != nil || off != 50 {
		t.Fatalf("append: %d %v", off, err)
	}
	if n, _ := ls.Lag(); n != 50 {
		t.Fatalf("lag %d before applying, want 50", n)
	}
	ls.notFoundQuiet(t, "u0")
	ls.shutdown()
	ls.noRun = false
	ls.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ls.WaitApplied(ctx, 50); err != nil {
		t.Fatal(err)
	}
	for u := range 5 {
		if p := ls.lookup(KindUserID, fmt.Sprintf("u%d", u)); p.EventCount != 10 {
			t.Fatalf("u%d has %d events, want 10", u, p.EventCount)
		}
	}
}

func (ls *logStore) notFoundQuiet(t *testing.T, userID string) {
	t.Helper()
	if _, err := ls.Lookup(Identifier{Kind: KindUserID, Value: userID}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s was applied before the applier ran: %v", userID, err)
	}
}

// If the stored offset were behind (a crash between apply and offset can't
// happen, they share a transaction, but a replayed log can), messageId
// dedupe keeps each event applied once.
func TestReplayBelowAppliedOffsetIsDeduplicated(t *testing.T) {
	ls := openLogStore(t, DefaultConfig())
	ls.appendWait(track("m1", "Viewed", user("u1")), track("m2", "Viewed", user("u1")))
	ls.shutdown()
	db, err := bbolt.Open(ls.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaLogApplied) }); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	ls.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ls.WaitApplied(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if p := ls.lookup(KindUserID, "u1"); p.EventCount != 2 {
		t.Fatalf("u1 has %d events after a replay of the whole log, want 2", p.EventCount)
	}
}

// An event the processors keep failing on is recorded as dead and skipped;
// the events around it, in the same batch, are applied.
func TestDeadEventIsSkipped(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log.MaxApplyTries = 3
	ls := openLogStore(t, cfg, failOn{"Poison"})
	ls.shutdown()
	ls.noRun = true
	ls.start()
	var evs []*Event
	for i := range 9 {
		name := "Viewed"
		if i == 4 {
			name = "Poison"
		}
		evs = append(evs, track(fmt.Sprintf("m%d", i), name, user("u1"), props("email", "secret@example.com")))
	}
	if _, err := ls.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	ls.shutdown()
	ls.noRun = false
	ls.start() // one read of all nine: they go to the applier as one batch
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ls.WaitApplied(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if p := ls.lookup(KindUserID, "u1"); p.EventCount != 8 {
		t.Fatalf("u1 has %d events, want the 8 that did not fail", p.EventCount)
	}
	dead, err := ls.DeadEvents()
	if err != nil {
		t.Fatal(err)
	}
	var d deadEvent
	if len(dead) != 1 || json.Unmarshal(dead[5], &d) != nil || d.MessageID != "m4" || d.Tries != 3 || d.Event != "Poison" {
		t.Fatalf("dead events %v, want offset 5 (m4) after 3 tries", dead)
	}
	logs := ls.logs.String()
	if !strings.Contains(logs, "dead event") || strings.Contains(logs, "secret@example.com") {
		t.Fatalf("logs should say a dead event was skipped, without its contents:\n%s", logs)
	}
	// Skipped for good: a restart does not try it again.
	ls.restart()
	if ls.AppliedOffset() != 9 {
		t.Fatalf("applied offset %d after restart, want 9", ls.AppliedOffset())
	}
}

// Past the lag bound, Append acknowledges nothing and says when to retry.
func TestBackloggedAppendAcceptsNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log.MaxLagEvents = 3
	cfg.Log.MaxLag = time.Minute
	ls := openLogStore(t, cfg)
	ls.shutdown()
	ls.noRun = true
	ls.start()
	if _, err := ls.Append(context.Background(), []*Event{track("m1", "A", user("u")), track("m2", "A", user("u")), track("m3", "A", user("u")), track("m4", "A", user("u"))}); err != nil {
		t.Fatal(err)
	}
	_, err := ls.Append(context.Background(), []*Event{track("m5", "A", user("u"))})
	var bl *ErrBacklogged
	if !errors.As(err, &bl) || bl.Events != 4 || bl.RetryAfter != cfg.Log.RetryAfter {
		t.Fatalf("append past the bound: %v", err)
	}
	if ls.LogCommitted() != 4 {
		t.Fatalf("the log holds %d events, want the 4 acknowledged", ls.LogCommitted())
	}
	// The bound in time: with few events, lag older than MaxLag refuses too.
	cfg.Log.MaxLagEvents = 1000
	ls.cfg = cfg
	ls.restart() // applier off (noRun): the 4 are still behind
	ls.clock.Advance(2 * time.Minute)
	if _, err := ls.Append(context.Background(), []*Event{track("m5", "A", user("u"))}); !errors.As(err, &bl) || bl.Lag != 2*time.Minute {
		t.Fatalf("append with 2 minutes of lag: %v", err)
	}
	// Once applied, it accepts again.
	ls.shutdown()
	ls.noRun = false
	ls.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ls.WaitApplied(ctx, 4); err != nil {
		t.Fatal(err)
	}
	ls.appendWait(track("m5", "A", user("u")))
	if p := ls.lookup(KindUserID, "u"); p.EventCount != 5 {
		t.Fatalf("%d events, want 5", p.EventCount)
	}
}

func TestWaitAppliedIsBounded(t *testing.T) {
	ls := openLogStore(t, DefaultConfig())
	ls.shutdown()
	ls.noRun = true
	ls.start()
	off, err := ls.Append(context.Background(), []*Event{track("m1", "A", user("u"))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ls.WaitApplied(ctx, off); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("wait for an event nobody applies: %v", err)
	}
}
