package profiles

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// The work beside a partition's applier runs while the partition is held:
// it gets the partition's open store and its fence, it is stopped when the
// applier returns (here, the fence failing), and the file closes only
// after it has returned, so what it does last still reaches the store.
func TestPartitionWorkRunsWhileHeld(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	files := NewPartitionFiles(filepath.Join(t.TempDir(), "parts"), func(path string) (*Store, error) {
		return Open(context.Background(), path, DefaultConfig(), Options{Now: func() time.Time { return t0 }})
	})
	type seen struct {
		p       int
		st      *Store
		fenced  error
		lastErr error
	}
	started, ended := make(chan seen, 1), make(chan seen, 1)
	files.Beside(func(ctx context.Context, p int, st *Store, fence func() error) {
		started <- seen{p: p, st: st, fenced: fence()}
		<-ctx.Done()
		// The file is still open: a last write of the work's lands.
		_, err := st.Ingest(context.Background(), []*Event{{Type: "track", Event: "Work Stopped", MessageID: "w1", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"}})
		ended <- seen{p: p, st: st, fenced: fence(), lastErr: err}
	})
	log := newPartLog()
	log.add(t, 3, &Event{Type: "track", Event: "Step", MessageID: "m1", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"})
	done := make(chan error, 1)
	go func() { done <- files.ApplyPartition(context.Background(), 4, 1, log) }()

	s := <-started
	if held, ok := files.Store(4); s.p != 4 || !ok || held != s.st || s.fenced != nil {
		t.Fatalf("work started with partition %d, store held %v (same: %v), fence %v; want 4, the held store, nil", s.p, ok, held == s.st, s.fenced)
	}
	waitFor(t, "partition 4 applied", func() bool { return s.st.PartitionApplied(4) == 3 })
	select {
	case <-ended:
		t.Fatal("the work ended while the partition was held")
	default:
	}

	log.fenced.Store(true)
	log.add(t, 5, &Event{Type: "track", Event: "Step", MessageID: "m2", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"})
	e := <-ended
	if !errors.Is(e.fenced, ErrFenced) || e.lastErr != nil {
		t.Fatalf("work ended with fence %v and its last write's error %v; want ErrFenced and nil", e.fenced, e.lastErr)
	}
	if err := <-done; !errors.Is(err, ErrFenced) {
		t.Fatalf("ApplyPartition = %v, want ErrFenced", err)
	}
	if _, ok := files.Store(4); ok {
		t.Fatal("partition 4 still held after its applier returned")
	}
	st, err := PartitionFileState(PartitionPath(files.dir, 4), 4)
	if err != nil || st.Offset != 3 {
		t.Fatalf("partition 4 at rest: %+v, %v; want applied through 3", st, err)
	}
}

// headLog is a partLog that knows where the partition ended when its
// applier started (PartitionHead).
type headLog struct {
	*partLog
	head uint64
}

func (l *headLog) Head() uint64 { return l.head }

// A new owner's work waits until the applier has caught up with where
// the partition ended when it started: its deliveries and timers act on
// the state the old owner left, not on an older snapshot's.
func TestPartitionWorkWaitsForTheHead(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	files := NewPartitionFiles(filepath.Join(t.TempDir(), "parts"), func(path string) (*Store, error) {
		return Open(context.Background(), path, DefaultConfig(), Options{Now: func() time.Time { return t0 }})
	})
	started := make(chan uint64, 1)
	files.Beside(func(ctx context.Context, p int, st *Store, fence func() error) {
		started <- st.PartitionApplied(p)
		<-ctx.Done()
	})
	log := &headLog{partLog: newPartLog(), head: 9}
	log.add(t, 3, &Event{Type: "track", Event: "Step", MessageID: "m1", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- files.ApplyPartition(ctx, 4, 1, log) }()
	waitFor(t, "partition 4 applied through 3", func() bool {
		st, ok := files.Store(4)
		return ok && st.PartitionApplied(4) == 3
	})
	select {
	case at := <-started:
		t.Fatalf("the work started with the partition applied through %d, before the head at 9", at)
	default:
	}
	log.add(t, 9, &Event{Type: "track", Event: "Step", MessageID: "m2", UserID: "ana", Timestamp: t0, ReceivedAt: t0, Source: "web"})
	if at := <-started; at < 9 {
		t.Fatalf("the work started with the partition applied through %d, want 9", at)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyPartition = %v, want context.Canceled", err)
	}
}
