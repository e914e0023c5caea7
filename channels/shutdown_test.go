package channels

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// stalling is a destination whose deliveries end only with the shutdown:
// "ok…" keys were accepted just before it, the rest are cut short.
type stalling struct{ started chan string }

func (s *stalling) Name() string { return "email" }

func (s *stalling) Deliver(ctx context.Context, msgs []*Message) []Result {
	out := make([]Result, len(msgs))
	for i, m := range msgs {
		s.started <- m.Key
		<-ctx.Done()
		if m.Key[:2] == "ok" {
			out[i].Events = []Outcome{{Event: "Email Delivered"}}
			continue
		}
		out[i].Err = fmt.Errorf("send email %s: %w", m.Key, ctx.Err())
	}
	return out
}

// TestShutdownIsNotAFailure: deliveries cut short by a shutdown stay
// queued as they were (no attempt, no backoff, no dead letter, no open
// circuit), and outcomes of those that went through are recorded with a
// context the shutdown did not cancel.
func TestShutdownIsNotAFailure(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	var mu sync.Mutex
	recorded := map[string]error{}
	metrics := NewMetrics(nil)
	o, err := NewOutbox(db, OutboxOptions{Metrics: metrics, Sink: sinkFunc(func(ctx context.Context, m *Message, _ []Outcome) error {
		mu.Lock()
		defer mu.Unlock()
		recorded[m.Key] = ctx.Err()
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"ok-1", "cut-1", "cut-2"}
	for _, k := range keys {
		if _, err := o.Add(&Message{Key: k, Destination: "email"}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := o.List(StateQueued, 10)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.Concurrency, cfg.MaxAttempts, cfg.BreakAfter = 3, 1, 1
	d := &stalling{started: make(chan string, len(keys))}
	if err := o.Register(d, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { o.Run(ctx); close(stopped) }()
	for range keys {
		<-d.started
	}
	cancel()
	<-stopped

	if dead, _ := o.List(StateDead, 10); len(dead) != 0 {
		t.Errorf("dead letters after a shutdown: %+v", dead)
	}
	after, err := o.List(StateQueued, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 {
		t.Fatalf("queued after the shutdown = %+v, want the two cut short", after)
	}
	was := map[string]*Message{}
	for _, m := range before {
		was[m.Key] = m
	}
	for _, m := range after {
		w := was[m.Key]
		if m.Attempts != 0 || m.LastError != "" || !m.NextAt.Equal(w.NextAt) {
			t.Errorf("%s after the shutdown: attempts %d, last error %q, next at %s; want it untouched (next at %s)", m.Key, m.Attempts, m.LastError, m.NextAt, w.NextAt)
		}
	}
	if v := testutil.ToFloat64(metrics.Open.WithLabelValues("email")); v != 0 {
		t.Errorf("circuit open after a shutdown")
	}
	mu.Lock()
	defer mu.Unlock()
	if err, ok := recorded["ok-1"]; !ok || err != nil {
		t.Errorf("outcome of the delivered message: recorded %v with ctx error %v; want recorded with a live context", ok, err)
	}
	if len(recorded) != 1 {
		t.Errorf("outcomes recorded = %v, want only the delivered one", recorded)
	}
}
