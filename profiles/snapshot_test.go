package profiles

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A partition's file copied while it is applied holds the offset of the
// same transaction; put back on another node it gives that node the
// person's state (profile id, events, the messageIds that dedupe
// retries), and applying goes on after the copy's offset. A copy cut
// short is refused and leaves the file as it was; a file in use is
// neither restored nor read at rest.
func TestPartitionFilesSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	open := func(path string) (*Store, error) {
		return Open(context.Background(), path, DefaultConfig(), Options{Now: func() time.Time { return t0 }})
	}
	const p = 2
	ev := func(user, id string) *Event {
		return &Event{Type: "track", Event: "Step", MessageID: id, UserID: user, Timestamp: t0, ReceivedAt: t0, Source: "web"}
	}
	log := newPartLog()
	log.add(t, 3, ev("ana", "m1"))
	log.add(t, 7, ev("ana", "m2"))
	log.add(t, 11, ev("bo", "m3"))

	src := NewPartitionFiles(filepath.Join(dir, "src"), open)
	apply := func(f *PartitionFiles, from uint64) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.ApplyPartition(ctx, p, from, log) }()
		return func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Fatalf("apply partition: %v", err)
			}
		}
	}
	stop := apply(src, 1)
	waitFor(t, "the source applies through 11", func() bool { return log.ckpt.Load() == 11 })
	if _, err := src.State(p); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("state of a partition being applied: %v", err)
	}
	var snap bytes.Buffer
	st, err := src.Snapshot(p, &snap)
	if err != nil {
		t.Fatal(err)
	}
	if st.Offset != 11 || st.Epoch == "" || st.Bytes != int64(snap.Len()) {
		t.Fatalf("snapshot %+v (%d bytes written), want offset 11, an epoch and its size", st, snap.Len())
	}
	srcStore, _ := src.Store(p)
	ana, err := srcStore.Lookup(Identifier{Kind: KindUserID, Value: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	log.add(t, 15, ev("ana", "m4"))
	waitFor(t, "the source applies through 15", func() bool { return log.ckpt.Load() == 15 })
	stop()
	if rest, err := src.State(p); err != nil || rest.Offset != 15 || rest.Epoch != st.Epoch {
		t.Fatalf("source file at rest: %+v, %v; want offset 15, epoch %s", rest, err, st.Epoch)
	}
	var again bytes.Buffer
	if at, err := src.Snapshot(p, &again); err != nil || at.Offset != 15 {
		t.Fatalf("snapshot of the file at rest: %+v, %v; want offset 15", at, err)
	}

	dst := NewPartitionFiles(filepath.Join(dir, "dst"), open)
	if zero, err := dst.State(p); err != nil || zero != (PartitionState{}) {
		t.Fatalf("state without a file: %+v, %v", zero, err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"cut short", snap.Bytes()[:snap.Len()/2]},
		{"with a byte changed", func() []byte {
			b := bytes.Clone(snap.Bytes())
			b[len(b)/3] ^= 0xff
			return b
		}()},
		{"not a store file", bytes.Repeat([]byte("x"), 8192)},
		{"empty", nil},
	}
	for _, tc := range tests {
		if _, err := dst.Restore(p, bytes.NewReader(tc.data)); err == nil {
			t.Fatalf("restore of a snapshot %s: no error", tc.name)
		}
		if zero, err := dst.State(p); err != nil || zero != (PartitionState{}) {
			t.Fatalf("after a failed restore (%s): %+v, %v; want no file", tc.name, zero, err)
		}
	}
	got, err := dst.Restore(p, bytes.NewReader(snap.Bytes()))
	if err != nil || got.Offset != 11 || got.Epoch == st.Epoch || got.Epoch == "" || got.Bytes != int64(snap.Len()) {
		t.Fatalf("restore: %+v, %v; want offset 11, an epoch other than the snapshot's %s", got, err, st.Epoch)
	}

	// Applying goes on after the snapshot's offset; m2 sent again is a
	// retry the restored messageIds recognize.
	log.add(t, 19, ev("ana", "m2"))
	stop = apply(dst, got.Offset+1)
	waitFor(t, "the restored partition applies through 19", func() bool { return log.ckpt.Load() == 19 })
	if _, err := dst.Restore(p, bytes.NewReader(snap.Bytes())); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("restore of a partition being applied: %v", err)
	}
	dstStore, _ := dst.Store(p)
	prof, err := dstStore.Lookup(Identifier{Kind: KindUserID, Value: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := dstStore.Events(prof.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.MessageID)
	}
	if prof.ID != ana.ID || prof.EventCount != 3 || strings.Join(ids, ",") != "m4,m2,m1" {
		t.Fatalf("ana on the new owner: profile %s with %d events %v; want profile %s with m1, m2, m4 once each", prof.ID, prof.EventCount, ids, ana.ID)
	}
	stop()
	if rest, err := dst.State(p); err != nil || rest.Offset != 19 || rest.Epoch != got.Epoch {
		t.Fatalf("restored file after applying: %+v, %v; want offset 19 and the epoch it got when restored, %s", rest, err, got.Epoch)
	}
}
