package journeys

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"cartera/profiles"
)

// movingLog is one partition of a cluster holding a MergeOut record: it
// reads it at offset 1, and calls during, in the middle of the merge step
// (after the loser's state was read, before the MergeOut commits), when
// the state is forwarded.
type movingLog struct {
	rec    []byte
	during func()

	mu   sync.Mutex
	sent [][]byte
}

func (l *movingLog) Read(ctx context.Context, from uint64, _ int) ([]profiles.Record, error) {
	if from <= 1 {
		return []profiles.Record{{Offset: 1, Data: l.rec}}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (l *movingLog) Fence() error            { return nil }
func (l *movingLog) Checkpoint(uint64) error { return nil }
func (l *movingLog) MaxRecord() int          { return 1 << 20 }
func (l *movingLog) Forward(_ context.Context, recs [][]byte) error {
	l.during()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, recs...)
	return nil
}

// A person merged into a profile of another partition leaves with their
// waiting instance and its timer pending. If the timer falls due between
// the export of their state and the commit of the MergeOut, it does not
// fire here (it fires where they went, which would send twice): it waits,
// and the commit ends the instance with its timer, without a send.
func TestTimerWaitsWhileItsPersonMovesOut(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
	pid := h.track("ana", "Product Added", nil)
	if insts := h.instances(pid); len(insts) != 1 || insts[0].Step != "idle" {
		t.Fatalf("ana's instances %+v, want one waiting at idle", insts)
	}
	survivor, err := profiles.NewProfileID(t0, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	out, err := profiles.MergeBody(profiles.MergeRecord{Op: profiles.MergeOut, Loser: pid, Survivor: survivor})
	if err != nil {
		t.Fatal(err)
	}
	fired := -1
	log := &movingLog{rec: profiles.RoutedRecord(pid, out), during: func() {
		// An hour and more later: the wait is over.
		fired = h.fire(t0.Add(2 * time.Hour))
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.store.ApplyPartition(ctx, 0, 1, log) }()
	deadline := time.Now().Add(20 * time.Second)
	for h.store.PartitionApplied(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the MergeOut was never committed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done

	if fired < 0 {
		t.Fatal("the state was never forwarded")
	}
	if sends := h.actions(ActSend, pid); len(sends) != 0 {
		t.Errorf("ana's timer fired while she moved out: %d sends here", len(sends))
	}
	if insts := h.instances(pid); len(insts) != 0 {
		t.Errorf("instances left here after the move: %+v", insts)
	}
	h.noTimers()
	// What went: the instance, waiting at idle with its timer.
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.sent) != 1 {
		t.Fatalf("forwarded %d records, want the MergeIn", len(log.sent))
	}
	_, body := profiles.RecordRoute(log.sent[0])
	var m profiles.MergeRecord
	if !profiles.IsMergeBody(body) || json.Unmarshal(body[1:], &m) != nil || m.Op != profiles.MergeIn || m.State == nil {
		t.Fatalf("forwarded %q, want the MergeIn with ana's state", body)
	}
	var moved movedPerson
	if err := json.Unmarshal(m.State.Parts["journeys"], &moved); err != nil {
		t.Fatal(err)
	}
	if len(moved.Instances) != 1 || moved.Instances[0].Timer == nil {
		t.Fatalf("moved %+v, want ana's instance with its timer", moved)
	}
	var in Instance
	if err := json.Unmarshal(moved.Instances[0].Instance, &in); err != nil || in.Step != "idle" {
		t.Fatalf("the moved instance %+v (%v), want it waiting at idle", in, err)
	}
}
