package channels

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"cartera/internal/clocktest"
)

// holding is a destination whose deliveries wait for release.
type holding struct {
	started chan string
	release chan struct{}
}

func (h *holding) Name() string { return "sms" }

func (h *holding) Deliver(ctx context.Context, msgs []*Message) []Result {
	for _, m := range msgs {
		h.started <- m.Key
	}
	<-h.release
	return make([]Result, len(msgs))
}

// TestInFlight: a message a worker holds is listed, without its payload,
// from its claim until its outcome is committed; queued ones are not.
func TestInFlight(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	clock := clocktest.New(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	o, err := NewOutbox(db, OutboxOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, err := o.Add(&Message{Key: k, Destination: "sms", ProfileID: "p-" + k, Journey: "cart", Step: "remind", Payload: json.RawMessage(`{"to":"+34600111221"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := o.InFlight(10); len(got) != 0 {
		t.Fatalf("in flight before Run: %+v", got)
	}
	cfg := fastConfig()
	cfg.BatchSize, cfg.Concurrency = 1, 2
	h := &holding{started: make(chan string, 3), release: make(chan struct{})}
	if err := o.Register(h, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { o.Run(ctx); close(stopped) }()
	held := map[string]bool{<-h.started: true, <-h.started: true}

	// Both workers hold one; the third is in the queue, or claimed and
	// waiting for a worker (in flight too).
	got := o.InFlight(10)
	if len(got) < 2 {
		t.Fatalf("in flight: %+v, want at least the 2 being delivered", got)
	}
	listed := map[string]bool{}
	for _, m := range got {
		listed[m.Key] = true
	}
	for k := range held {
		if !listed[k] {
			t.Errorf("%s is being delivered and not listed in flight: %+v", k, got)
		}
	}
	for _, m := range got {
		if m.Destination != "sms" || m.Journey != "cart" || m.Step != "remind" || !m.Since.Equal(clock.Now()) {
			t.Errorf("in flight: %+v", m)
		}
		if m.Payload != nil {
			t.Errorf("in flight message %d carries its payload %s", m.Seq, m.Payload)
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Seq >= got[i].Seq {
			t.Errorf("not in claim order: %d, %d", got[i-1].Seq, got[i].Seq)
		}
	}
	if one := o.InFlight(1); len(one) != 1 {
		t.Errorf("limit 1: %d", len(one))
	}
	close(h.release)
	<-h.started // the third, once a worker is free
	cancel()
	<-stopped
	if got := o.InFlight(10); len(got) != 0 {
		t.Errorf("in flight after every delivery settled: %+v", got)
	}
	if q, _ := o.List(StateQueued, 10); len(q) != 0 {
		t.Errorf("still queued: %+v", q)
	}
}
