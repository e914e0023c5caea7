package channels

import (
	"maps"
	"path/filepath"
	"testing"
)

func TestSizes(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	o, err := NewOutbox(db, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Add(&Message{Key: "a", Destination: "email"}, &Message{Key: "b", Destination: "email"}, &Message{Key: "c", Destination: "sms"}); err != nil {
		t.Fatal(err)
	}
	s, err := o.Sizes()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"email": 2, "sms": 1}; !maps.Equal(s.Queued, want) || s.Dead != 0 {
		t.Fatalf("Sizes = %+v, want %v and no dead", s, want)
	}
	q, _ := o.List(StateQueued, 10)
	if err := o.Drop(q[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := o.Drop(q[2].Seq); err != nil {
		t.Fatal(err)
	}
	s, _ = o.Sizes()
	if len(s.Queued) != 1 {
		t.Fatalf("after two drops: %+v, want one destination with one message", s.Queued)
	}
}
