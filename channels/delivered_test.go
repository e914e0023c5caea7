package channels

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// A cluster node's outbox notes, after each settle, the keys of the
// messages that left its queue for good (delivered, or suppressed for want
// of consent), but not those that failed; the note is kept in the stream
// of a partition of the messages' profiles. The next owner of the
// partition, restored from an older snapshot, applies the note: a noted
// message still queued there leaves the queue undelivered, one whose step
// has not run again there is never enqueued, and the rest go as before.
func TestDeliveredNotesReachTheNextOwner(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var notes [][]byte
	var asked []string
	noter := func(_ context.Context, profileID string, body []byte) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, profileID)
		if profileID == "elsewhere" {
			return false, nil // merged into a profile of another partition
		}
		notes = append(notes, body)
		return true, nil
	}
	db := openDB(t, filepath.Join(dir, "old.db"))
	defer db.Close()
	old, err := NewOutbox(db, OutboxOptions{Note: noter})
	if err != nil {
		t.Fatal(err)
	}
	d := newCounting("webhook")
	d.fail = func(key string, _ int) error {
		switch key {
		case "k-suppressed":
			return ErrNoConsent
		case "k-bounced":
			return Permanent(errors.New("550 no such user"))
		}
		return nil
	}
	cfg := fastConfig()
	cfg.BatchSize = 10
	if err := old.Register(d, cfg); err != nil {
		t.Fatal(err)
	}
	msgs := []*Message{
		{Key: "k-sent", Destination: "webhook", ProfileID: "elsewhere"},
		{Key: "k-suppressed", Destination: "webhook", ProfileID: "p1"},
		{Key: "k-bounced", Destination: "webhook", ProfileID: "p1"},
	}
	if _, err := old.Add(msgs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { old.Run(ctx); close(stopped) }()
	waitKeys(t, d, 3)
	waitFor(t, "the note", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(notes) == 1
	})
	cancel()
	<-stopped
	var n deliveredNote
	if err := json.Unmarshal(notes[0], &n); err != nil {
		t.Fatal(err)
	}
	slices.Sort(n.Keys)
	if !slices.Equal(n.Keys, []string{"k-sent", "k-suppressed"}) || n.At.IsZero() {
		t.Fatalf("noted %+v, want the sent and the suppressed message's keys, and when", n)
	}
	if !slices.Equal(asked, []string{"elsewhere", "p1"}) {
		t.Fatalf("the note was offered for %q, want elsewhere's, then p1's partition", asked)
	}

	// The next owner: its snapshot has k-sent queued; k-suppressed's step
	// has not run there again yet.
	db2 := openDB(t, filepath.Join(dir, "new.db"))
	defer db2.Close()
	next, err := NewOutbox(db2, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.Add(&Message{Key: "k-sent", Destination: "webhook", ProfileID: "p1"}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a note applied twice changes nothing more
		if err := db2.Update(func(tx *bbolt.Tx) error { return next.ApplyDelivered(tx, notes[0]) }); err != nil {
			t.Fatal(err)
		}
	}
	if q, err := next.List(StateQueued, 10); err != nil || len(q) != 0 {
		t.Fatalf("queued after the note: %d (%v), want none", len(q), err)
	}
	added, err := next.Add(&Message{Key: "k-suppressed", Destination: "webhook", ProfileID: "p1"},
		&Message{Key: "k-new", Destination: "webhook", ProfileID: "p1"})
	if err != nil || added != 1 {
		t.Fatalf("the steps run again enqueued %d (%v), want only the message not noted", added, err)
	}
	d2 := newCounting("webhook")
	if err := next.Register(d2, cfg); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go next.Run(ctx2)
	waitKeys(t, d2, 1)
	for key, want := range map[string]int{"k-new": 1, "k-sent": 0, "k-suppressed": 0} {
		if got := d2.count(key); got != want {
			t.Errorf("the next owner delivered %s %d times, want %d", key, got, want)
		}
	}

	if err := db2.Update(func(tx *bbolt.Tx) error { return next.ApplyDelivered(tx, []byte("{")) }); err == nil {
		t.Error("a note that does not decode was applied")
	}
}

// waitFor waits until cond holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
