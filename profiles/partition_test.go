package profiles

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// partLog is one partition's records in memory, at sparse offsets, with
// a fence the test can close and the checkpoints it was told.
type partLog struct {
	mu      sync.Mutex
	recs    []Record
	more    chan struct{}
	fenced  atomic.Bool
	checked atomic.Int64
	ckpt    atomic.Uint64
}

func newPartLog() *partLog { return &partLog{more: make(chan struct{})} }

func (l *partLog) add(t *testing.T, off uint64, e *Event) {
	t.Helper()
	v, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	l.addRaw(off, v)
}

func (l *partLog) addRaw(off uint64, data []byte) {
	l.mu.Lock()
	l.recs = append(l.recs, Record{Offset: off, Data: data})
	close(l.more)
	l.more = make(chan struct{})
	l.mu.Unlock()
}

func (l *partLog) Read(ctx context.Context, from uint64, max int) ([]Record, error) {
	for {
		l.mu.Lock()
		var out []Record
		for _, r := range l.recs {
			if r.Offset >= from && len(out) < max {
				out = append(out, r)
			}
		}
		more := l.more
		l.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *partLog) Fence() error {
	l.checked.Add(1)
	if l.fenced.Load() {
		return fmt.Errorf("%w: test", ErrFenced)
	}
	return nil
}

func (l *partLog) Checkpoint(through uint64) error {
	l.ckpt.Store(through)
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A partition's records are applied at their sparse offsets, each commit
// fenced and checkpointed, its offset kept under the partition; once the
// fence fails, nothing more of it is committed and ApplyPartition returns
// ErrFenced. Started again, it goes on after what the store applied, and
// a record it applied before is not applied twice.
func TestApplyPartition(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	log := newPartLog()
	log.add(t, 3, track("p1", "A", user("ann")))
	log.add(t, 7, track("p2", "B", user("ann")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.ApplyPartition(ctx, 5, 1, log) }()

	// The checkpoint follows the commit.
	waitFor(t, "partition 5 applied and checkpointed through 7", func() bool { return ts.PartitionApplied(5) == 7 && log.ckpt.Load() == 7 })
	if log.checked.Load() == 0 {
		t.Fatal("committed without checking the fence")
	}
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 2 {
		t.Fatalf("ann has %d events, want 2", got)
	}
	if ts.PartitionApplied(4) != 0 || ts.AppliedOffset() != 0 {
		t.Fatalf("another partition's offset %d, the log's %d: want 0 and 0", ts.PartitionApplied(4), ts.AppliedOffset())
	}

	log.fenced.Store(true)
	log.add(t, 12, track("p3", "C", user("ann")))
	select {
	case err := <-done:
		if !errors.Is(err, ErrFenced) {
			t.Fatalf("ApplyPartition after the fence failed: %v, want ErrFenced", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ApplyPartition goes on after its fence failed")
	}
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 2 || ts.PartitionApplied(5) != 7 {
		t.Fatalf("after the fence failed: %d events, partition at %d; want 2 and 7", got, ts.PartitionApplied(5))
	}

	// Held again, from an older checkpoint: the store's own offset wins
	// for what it applied, and the record at 12 is applied once.
	log.fenced.Store(false)
	go func() { done <- ts.ApplyPartition(ctx, 5, 1, log) }()
	waitFor(t, "partition 5 applied through 12", func() bool { return ts.PartitionApplied(5) == 12 })
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 3 {
		t.Fatalf("ann has %d events, want 3", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyPartition after cancel: %v", err)
	}
}

// A merge step the processors keep failing on, and one that does not
// decode, are recorded as dead, with what was wrong, and the partition
// goes on after them: before, it retried such a step for ever.
func TestDeadMergeSteps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log.MaxApplyTries = 2
	ts := openStore(t, cfg)
	newID := func() string {
		id, err := NewProfileID(time.Now(), crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	loser, survivor, other := newID(), newID(), newID()
	// The state carried is of another profile than the loser.
	state, err := encodeProfile(&Profile{ID: other}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := MergeBody(MergeRecord{Op: MergeIn, Loser: loser, Survivor: survivor, State: &ProfileState{Profile: state}})
	if err != nil {
		t.Fatal(err)
	}
	log := newPartLog()
	log.addRaw(3, RoutedRecord(survivor, in))
	log.addRaw(4, RoutedRecord(survivor, []byte{mergeMark, '{'}))
	log.add(t, 7, track("p1", "A", user("ann")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.ApplyPartition(ctx, 5, 1, log) }()
	waitFor(t, "partition 5 applied through 7", func() bool { return ts.PartitionApplied(5) == 7 })
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 1 {
		t.Fatalf("ann has %d events, want 1", got)
	}
	dead, err := ts.DeadEvents()
	if err != nil {
		t.Fatal(err)
	}
	for off, want := range map[uint64]string{
		3: `merge step "in" at offset 3: commit events: apply merge of ` + loser + " into " + survivor + ": merge " + loser + " into " + survivor + ": the state is of profile " + other,
		4: "decode merge record",
	} {
		var d deadEvent
		if err := json.Unmarshal(dead[off], &d); err != nil {
			t.Fatalf("dead record at %d: %v (%s)", off, err, dead[off])
		}
		if d.Type != deadMerge || !strings.Contains(d.Error, want) {
			t.Errorf("dead record at %d: type %q, error %q; want %q and %q", off, d.Type, d.Error, deadMerge, want)
		}
	}
	for _, id := range []string{loser, other} {
		if _, err := ts.Lookup(Identifier{Kind: KindProfileID, Value: id}); err == nil {
			t.Errorf("the state carried for %s was imported", id)
		}
	}
	cancel()
	<-done
}

// forwardingLog is a partLog that can append (a Forwarder), and keeps
// each append it was asked for.
type forwardingLog struct {
	*partLog
	mu    sync.Mutex
	calls [][][]byte
}

func (l *forwardingLog) Forward(_ context.Context, recs [][]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, recs)
	return nil
}

func (l *forwardingLog) MaxRecord() int { return 1 << 20 }

// Events routed to a profile merged away from here are forwarded to its
// survivor in one append for each run of them, before what follows them
// is committed: three, then (after an event applied here) two, not five
// appends of one.
func TestForwardsInRuns(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	newID := func() string {
		id, err := NewProfileID(time.Now(), crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	loser, survivor := newID(), newID()
	out, err := MergeBody(MergeRecord{Op: MergeOut, Loser: loser, Survivor: survivor})
	if err != nil {
		t.Fatal(err)
	}
	log := &forwardingLog{partLog: newPartLog()}
	routed := func(off uint64, mid string) {
		v, err := json.Marshal(track(mid, "Viewed", anon("device-1")))
		if err != nil {
			t.Fatal(err)
		}
		log.addRaw(off, RoutedRecord(loser, v))
	}
	log.addRaw(3, RoutedRecord(loser, out))
	routed(4, "m4")
	routed(5, "m5")
	routed(6, "m6")
	log.add(t, 7, track("m7", "A", user("ann")))
	routed(8, "m8")
	routed(9, "m9")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.ApplyPartition(ctx, 5, 1, log) }()
	waitFor(t, "partition 5 applied through 9", func() bool { return ts.PartitionApplied(5) == 9 })
	cancel()
	<-done
	log.mu.Lock()
	defer log.mu.Unlock()
	var sizes []int
	for _, call := range log.calls {
		sizes = append(sizes, len(call))
		for _, rec := range call {
			if to, _ := RecordRoute(rec); to != survivor {
				t.Errorf("forwarded to %q, want the survivor %s", to, survivor)
			}
		}
	}
	if fmt.Sprint(sizes) != "[3 2]" {
		t.Errorf("forwarded in appends of %v records, want [3 2]", sizes)
	}
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 1 {
		t.Errorf("ann has %d events, want 1", got)
	}
}
