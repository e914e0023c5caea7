package channels

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Bury puts messages straight into the dead letters, once per key, where
// List shows them and Retry queues them again; the caller's messages are
// not changed.
func TestBury(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "c.db"))
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	o, err := NewOutbox(db, OutboxOptions{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	m := &Message{Key: "google-request/req-1/k1", Destination: "google:vip", ProfileID: "p1", Payload: []byte(`{"audience":"vip","op":"add"}`), Attempts: 1, LastError: "FAILED"}
	if n, err := o.Bury(m, &Message{Key: "google-request/req-1/k2", Destination: "google:vip", ProfileID: "p2", Payload: []byte(`{}`)}); n != 2 || err != nil {
		t.Fatalf("Bury = %d, %v", n, err)
	}
	if n, err := o.Bury(m); n != 0 || err != nil {
		t.Errorf("the same key again = %d, %v; want skipped", n, err)
	}
	if m.Seq != 0 || !m.DeadAt.IsZero() {
		t.Errorf("Bury changed the caller's message: %+v", m)
	}
	if _, err := o.Bury(&Message{Destination: "google:vip"}); err == nil {
		t.Error("a message without a key was buried")
	}
	dead, err := o.List(StateDead, 10)
	if err != nil || len(dead) != 2 || dead[0].ProfileID != "p1" || !dead[0].DeadAt.Equal(at) || dead[0].LastError != "FAILED" || dead[0].Seq == 0 {
		t.Fatalf("dead = %+v, %v", dead, err)
	}
	if got := testutil.ToFloat64(o.metrics.Dead.WithLabelValues("google:vip")); got != 2 {
		t.Errorf("dead letters counted %v, want 2", got)
	}
	if err := o.Retry(dead[0].Seq); err != nil {
		t.Fatal(err)
	}
	if q, _ := o.List(StateQueued, 10); len(q) != 1 || q[0].Key != m.Key || q[0].Attempts != 0 {
		t.Errorf("queued after retry = %+v", q)
	}
}
