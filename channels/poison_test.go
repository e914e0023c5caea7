package channels

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestUndecodableMessageGoesDead: a queued record that cannot be read
// moves to the dead letters; the messages behind it are delivered.
func TestUndecodableMessageGoesDead(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	o, err := NewOutbox(db, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, err := o.Add(&Message{Key: k, Destination: "email"}); err != nil {
			t.Fatal(err)
		}
	}
	// A record ahead of them (due at the epoch) that is not a message.
	const badSeq = 999
	if err := db.Update(func(tx *bbolt.Tx) error {
		lq := tx.Bucket(bucketQueue).Bucket([]byte("email"))
		qk := queueKey(time.Unix(0, 0), badSeq)
		if err := tx.Bucket(bucketWhere).Put(u64(badSeq), append([]byte("email\x00"), qk...)); err != nil {
			return err
		}
		return lq.Put(qk, []byte("\x00garbage"))
	}); err != nil {
		t.Fatal(err)
	}
	d := newCounting("email")
	if err := o.Register(d, fastConfig()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { o.Run(ctx); close(stopped) }()
	waitKeys(t, d, 3)
	cancel()
	<-stopped

	dead, err := o.List(StateDead, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Seq != badSeq || !strings.Contains(dead[0].LastError, "decode") || dead[0].Destination != "email" {
		t.Fatalf("dead letters = %+v, want the unreadable record", dead)
	}
	if q, err := o.List(StateQueued, 10); err != nil || len(q) != 0 {
		t.Fatalf("queued = %+v, %v; want none", q, err)
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketWhere).Get(u64(badSeq)) != nil {
			t.Error("the unreadable record is still indexed as queued")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// An admin can drop it like any dead letter.
	if err := o.Drop(badSeq); err != nil {
		t.Fatal(err)
	}
}
