package profiles

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
)

// appendingLog is a partLog that takes records of the store's own
// (PartitionAppender), at the next offset, or refuses them as another
// partition's.
type appendingLog struct {
	*partLog
	next  atomic.Uint64
	other atomic.Bool
}

func (l *appendingLog) AppendRecords(_ context.Context, recs [][]byte) (uint64, error) {
	if l.other.Load() {
		return 0, fmt.Errorf("%w: test", ErrOtherPartition)
	}
	var last uint64
	for _, r := range recs {
		last = l.next.Add(1)
		l.addRaw(last, r)
	}
	return last, nil
}

// While a store applies a partition whose log takes its records, an event
// it is asked to record itself (IngestFor) goes into the partition's log
// and is applied from there, once: a store that replays the log from
// nothing (a new owner after a node died) has it too. A record the log
// says belongs elsewhere is committed straight into the file.
func TestIngestForThroughThePartitionLog(t *testing.T) {
	ts := openStore(t, DefaultConfig())
	log := &appendingLog{partLog: newPartLog()}
	log.next.Store(100)
	// Ann's sign-up, addressed to her profile as a router addresses it.
	pid, err := NewProfileID(t0, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body, err := encodeEvent(track("p1", "Signed Up", user("ann")))
	if err != nil {
		t.Fatal(err)
	}
	log.addRaw(3, RoutedRecord(pid, body))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.ApplyPartition(ctx, 5, 1, log) }()
	waitFor(t, "partition 5 applied through 3", func() bool { return ts.PartitionApplied(5) == 3 })
	if got := ts.lookup(KindUserID, "ann").ID; got != pid {
		t.Fatalf("ann is %s, want the profile her sign-up was addressed to, %s", got, pid)
	}

	opened := func() *Event {
		return &Event{Type: TypeTrack, Event: "Email Opened", MessageID: "open:k1", Source: "email"}
	}
	res, err := ts.IngestFor(ctx, pid, opened())
	if err != nil || res.ProfileID != pid || res.Duplicate {
		t.Fatalf("IngestFor = %+v, %v; want ann's profile, not a duplicate", res, err)
	}
	if got := ts.PartitionApplied(5); got != 101 {
		t.Fatalf("IngestFor returned with the partition applied through %d, want its record at 101", got)
	}
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 2 {
		t.Fatalf("ann has %d events, want 2", got)
	}
	res, err = ts.IngestFor(ctx, pid, opened())
	if err != nil || !res.Duplicate {
		t.Fatalf("IngestFor again = %+v, %v; want a duplicate", res, err)
	}
	waitFor(t, "the repeat applied", func() bool { return ts.PartitionApplied(5) == 102 })
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 2 {
		t.Fatalf("after the repeat ann has %d events, want 2", got)
	}

	// A new owner that replays the partition from nothing has the open.
	other := openStore(t, DefaultConfig())
	otherCtx, stopOther := context.WithCancel(context.Background())
	otherDone := make(chan error, 1)
	go func() { otherDone <- other.ApplyPartition(otherCtx, 5, 1, newReplay(log.partLog)) }()
	waitFor(t, "the replay applied through 102", func() bool { return other.PartitionApplied(5) == 102 })
	if got := other.lookup(KindUserID, "ann"); got.ID != pid || got.EventCount != 2 {
		t.Fatalf("replayed: ann is %s with %d events, want %s with 2", got.ID, got.EventCount, pid)
	}
	stopOther()
	<-otherDone

	// A record of another partition: straight into the file.
	log.other.Store(true)
	if _, err := ts.IngestFor(ctx, pid, &Event{Type: TypeTrack, Event: "Email Link Clicked", MessageID: "click:k1", Source: "email"}); err != nil {
		t.Fatal(err)
	}
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 3 || ts.PartitionApplied(5) != 102 {
		t.Fatalf("committed straight: ann has %d events, the partition at %d; want 3 and 102", got, ts.PartitionApplied(5))
	}
	cancel()
	<-done
}

// newReplay is a log with l's records, for another store to apply.
func newReplay(l *partLog) *partLog {
	r := newPartLog()
	l.mu.Lock()
	defer l.mu.Unlock()
	r.recs = append(r.recs, l.recs...)
	return r
}
