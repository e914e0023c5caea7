package profiles

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

// noteRecorder is a component keeping its state in a bucket of the
// store's file, as the outbox does: each note it applies appends its
// body there; a body "fail" fails.
type noteRecorder struct {
	mu      sync.Mutex
	applied []string
}

var bucketNotesTest = []byte("notes_test")

func (r *noteRecorder) apply(tx *bbolt.Tx, body []byte) error {
	if string(body) == "fail" {
		return errors.New("a note the component cannot apply")
	}
	b, err := tx.CreateBucketIfNotExists(bucketNotesTest)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.applied = append(r.applied, string(body))
	r.mu.Unlock()
	return b.Put(u64key(seq), body)
}

// kept reads what the component's bucket holds in st.
func kept(t *testing.T, st *Store) []string {
	t.Helper()
	var out []string
	err := st.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketNotesTest)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			out = append(out, string(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func u64key(n uint64) []byte {
	return []byte{byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// A note goes into the partition's log and is applied from there by its
// kind's handler, in the partition's order; a store that replays the log
// (a new owner after a node died) applies it too. A note of a kind no
// handler takes is skipped, one whose handler keeps failing is recorded
// as dead, and neither holds the partition up. A store that applies no
// partition, or a profile of another partition, keeps no note: its file
// is the record.
func TestNotesThroughThePartitionLog(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log.MaxApplyTries = 2
	ts := openStore(t, cfg)
	rec := &noteRecorder{}
	ts.HandleNotes("test", rec.apply)
	pid, err := NewProfileID(t0, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if ok, err := ts.Note(ctx, pid, "test", []byte("before")); ok || err != nil {
		t.Fatalf("Note with no partition applied = %v, %v; want false, nil", ok, err)
	}

	log := &appendingLog{partLog: newPartLog()}
	log.next.Store(100)
	body, err := encodeEvent(track("p1", "Signed Up", user("ann")))
	if err != nil {
		t.Fatal(err)
	}
	log.addRaw(3, RoutedRecord(pid, body))
	log.addRaw(4, RoutedRecord(pid, NoteBody("nobody", []byte("x"))))
	log.addRaw(5, RoutedRecord(pid, NoteBody("test", []byte("fail"))))
	done := make(chan error, 1)
	go func() { done <- ts.ApplyPartition(ctx, 5, 1, log) }()
	waitFor(t, "partition 5 applied through 5", func() bool { return ts.PartitionApplied(5) == 5 })

	for _, b := range []string{"one", "two"} {
		ok, err := ts.Note(ctx, pid, "test", []byte(b))
		if !ok || err != nil {
			t.Fatalf("Note(%s) = %v, %v; want true, nil", b, ok, err)
		}
	}
	if _, err := ts.Note(ctx, "ann", "test", []byte("x")); err == nil || !strings.Contains(err.Error(), `"ann" is not a profile id`) {
		t.Fatalf("Note for a user id: %v, want it refused", err)
	}
	waitFor(t, "the notes applied", func() bool { return ts.PartitionApplied(5) == 102 })
	if got := kept(t, ts.Store); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("the component kept %q, want the two notes in order", got)
	}
	dead, err := ts.DeadEvents()
	if err != nil {
		t.Fatal(err)
	}
	var d deadEvent
	if err := json.Unmarshal(dead[5], &d); err != nil {
		t.Fatalf("dead record at 5: %v (%s)", err, dead[5])
	}
	if d.Type != deadNote || d.Event != "test" || d.Tries != 2 || !strings.Contains(d.Error, "a note the component cannot apply") {
		t.Errorf("dead record at 5: %+v; want the failing note, tried twice", d)
	}
	if _, ok := dead[4]; ok {
		t.Error("the note no handler takes was recorded as dead, want it skipped")
	}
	if got := ts.lookup(KindUserID, "ann").EventCount; got != 1 {
		t.Errorf("ann has %d events, want her sign-up only: a note is no event", got)
	}

	// A new owner replaying the partition applies the notes too.
	other := openStore(t, cfg)
	other.HandleNotes("test", (&noteRecorder{}).apply)
	otherCtx, stopOther := context.WithCancel(context.Background())
	otherDone := make(chan error, 1)
	go func() { otherDone <- other.ApplyPartition(otherCtx, 5, 1, newReplay(log.partLog)) }()
	waitFor(t, "the replay applied through 102", func() bool { return other.PartitionApplied(5) == 102 })
	if got := kept(t, other.Store); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("the new owner's component kept %q, want the two notes", got)
	}
	stopOther()
	<-otherDone

	log.other.Store(true)
	if ok, err := ts.Note(ctx, pid, "test", []byte("elsewhere")); ok || err != nil {
		t.Fatalf("Note for another partition's profile = %v, %v; want false, nil", ok, err)
	}
	cancel()
	<-done
}
