package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"cartera/internal/clocktest"
)

var tr0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// TestPruneByAge: keys of settled messages and dead letters go after
// their retention; keys of messages still queued or dead stay; keys of
// earlier versions (no time) are stamped and go one retention later.
func TestPruneByAge(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	clock := clocktest.New(tr0)
	o, err := NewOutbox(db, OutboxOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	d := newCounting("hook")
	d.fail = func(key string, _ int) error {
		if key == "dies" {
			return Permanent(errors.New("410 gone"))
		}
		return nil
	}
	if err := o.Register(d, fastConfig()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent", "dies"} {
		if _, err := o.Add(&Message{Key: k, Destination: "hook"}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { o.Run(ctx); close(stopped) }()
	waitKeys(t, d, 2)
	cancel()
	<-stopped
	// One still queued (another destination, never run), one key as an
	// earlier version wrote it.
	if _, err := o.Add(&Message{Key: "waiting", Destination: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketKeys).Put([]byte("legacy"), u64(77)) }); err != nil {
		t.Fatal(err)
	}
	cfg := RetentionConfig{Keys: 48 * time.Hour, DeadLetters: 24 * time.Hour}
	if err := cfg.Validate("channels.retention"); err != nil {
		t.Fatal(err)
	}
	has := func(key string) bool {
		var ok bool
		_ = db.View(func(tx *bbolt.Tx) error { ok = tx.Bucket(bucketKeys).Get([]byte(key)) != nil; return nil })
		return ok
	}
	steps := []struct {
		after         time.Duration
		keys, dead    int
		present, gone []string
	}{
		{time.Hour, 0, 0, []string{"sent", "dies", "waiting", "legacy"}, nil},
		{25 * time.Hour, 0, 1, []string{"sent", "dies", "waiting", "legacy"}, nil},
		// The dead letter is gone, so its key may go too; the queued one stays.
		{49 * time.Hour, 2, 0, []string{"waiting", "legacy"}, []string{"sent", "dies"}},
		{49*time.Hour + 48*time.Hour + time.Minute, 1, 0, []string{"waiting"}, []string{"legacy"}},
	}
	for _, s := range steps {
		clock.Set(tr0.Add(s.after))
		keys, dead, err := o.Prune(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if keys != s.keys || dead != s.dead {
			t.Errorf("after %s: pruned %d keys, %d dead letters; want %d, %d", s.after, keys, dead, s.keys, s.dead)
		}
		for _, k := range s.present {
			if !has(k) {
				t.Errorf("after %s: key %s pruned too early", s.after, k)
			}
		}
		for _, k := range s.gone {
			if has(k) {
				t.Errorf("after %s: key %s still kept", s.after, k)
			}
		}
	}
	if q, _ := o.List(StateQueued, 10); len(q) != 1 || q[0].Key != "waiting" {
		t.Errorf("queued = %+v, want the waiting message untouched", q)
	}
	if err := (RetentionConfig{Keys: time.Minute, DeadLetters: time.Hour}).Validate("channels.retention"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("channels.retention.keys")) {
		t.Errorf("Validate of a minute's keys = %v, want an error naming channels.retention.keys", err)
	}
}

// TestErasePerson: an erasure removes the person's dead letters and queued
// messages, except those the caller keeps; nobody else's are touched.
func TestErasePerson(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	o, err := NewOutbox(db, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*Message{
		{Key: "ana-send", Destination: "email", ProfileID: "ana", Payload: []byte(`{"template":"t","data":{"trigger":{"email":"ana@example.com"}}}`)},
		{Key: "ana-remove", Destination: "meta:vip", ProfileID: "ana", Payload: []byte(`{"audience":"vip","op":"remove","emails":["ana@example.com"]}`)},
		{Key: "ana-dead", Destination: "webhook", ProfileID: "ana", Payload: []byte(`{"template":"t"}`)},
		{Key: "bea-send", Destination: "email", ProfileID: "bea"},
		{Key: "bea-dead", Destination: "webhook", ProfileID: "bea"},
	}
	if _, err := o.Add(msgs...); err != nil {
		t.Fatal(err)
	}
	// Two dead letters, as deliver leaves them.
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, m := range []*Message{msgs[2], msgs[4]} {
			if err := tx.Bucket(bucketQueue).Bucket([]byte(m.Destination)).Delete(queueKey(m.NextAt, m.Seq)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketWhere).Delete(u64(m.Seq)); err != nil {
				return err
			}
			m.LastError = "550 <ana@example.com>: no such user"
			v, _ := jsonOf(m)
			if err := tx.Bucket(bucketDead).Put(u64(m.Seq), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Update(func(tx *bbolt.Tx) error {
		n, err = o.ErasePerson(tx, "ana", func(m *Message) bool { return m.Key == "ana-remove" })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("ErasePerson removed %d, want ana's send and dead letter", n)
	}
	left := map[string]bool{}
	for _, st := range []string{StateQueued, StateDead} {
		ms, err := o.List(st, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			left[m.Key] = true
		}
	}
	for _, k := range []string{"ana-remove", "bea-send", "bea-dead"} {
		if !left[k] {
			t.Errorf("%s removed", k)
		}
	}
	for _, k := range []string{"ana-send", "ana-dead"} {
		if left[k] {
			t.Errorf("%s kept", k)
		}
	}
	// The where index no longer points at the removed send.
	if err := o.Drop(msgs[0].Seq); !errors.Is(err, ErrNotFound) {
		t.Errorf("Drop of the erased send = %v, want ErrNotFound", err)
	}
}

func jsonOf(m *Message) ([]byte, error) { return json.Marshal(m) }
