package channels

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/bbolt"
)

// counting is a destination that records every key it sees and fails as
// told.
type counting struct {
	name string
	mu   sync.Mutex
	seen map[string]int
	// fail decides the result of one attempt of a key.
	fail    func(key string, attempt int) error
	batches []int
	done    chan string
}

func newCounting(name string) *counting {
	return &counting{name: name, seen: map[string]int{}, done: make(chan string, 1000)}
}

func (c *counting) Name() string { return c.name }

func (c *counting) Deliver(ctx context.Context, msgs []*Message) []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, len(msgs))
	out := make([]Result, len(msgs))
	for i, m := range msgs {
		c.seen[m.Key]++
		if c.fail != nil {
			out[i].Err = c.fail(m.Key, c.seen[m.Key])
		}
		if out[i].Err == nil {
			out[i].Events = []Outcome{{Event: "Delivered"}}
		}
		c.done <- m.Key
	}
	return out
}

func (c *counting) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

type sinkFunc func(ctx context.Context, m *Message, o []Outcome) error

func (f sinkFunc) Record(ctx context.Context, m *Message, o []Outcome) error { return f(ctx, m, o) }

func openDB(t testing.TB, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func fastConfig() DestinationConfig {
	c := DefaultDestinationConfig()
	c.Backoff, c.MaxBackoff = time.Millisecond, 4*time.Millisecond
	c.MaxAttempts = 3
	c.BreakAfter, c.BreakFor = 100, time.Millisecond
	return c
}

func waitKeys(t *testing.T, c *counting, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-c.done:
		case <-deadline:
			t.Fatalf("%d deliveries did not happen", n)
		}
	}
}

func TestEnqueueIsIdempotent(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	o, err := NewOutbox(db, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := o.Add(&Message{Key: "j/v/1/s/1", Destination: "email"}); err != nil {
			t.Fatal(err)
		}
	}
	q, _ := o.List(StateQueued, 10)
	if len(q) != 1 {
		t.Fatalf("queued = %d, want 1", len(q))
	}
	if _, err := o.Add(&Message{Key: "", Destination: "email"}); err == nil {
		t.Fatal("a message without key was accepted")
	}
}

func TestRetriesThenDeadLetterThenRetry(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	var recorded []string
	var mu sync.Mutex
	o, err := NewOutbox(db, OutboxOptions{Sink: sinkFunc(func(_ context.Context, m *Message, out []Outcome) error {
		mu.Lock()
		defer mu.Unlock()
		recorded = append(recorded, m.Key+":"+out[0].Event)
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	d := newCounting("hook")
	broken := true
	d.fail = func(key string, attempt int) error {
		switch {
		case key == "bad" && broken:
			return errors.New("503 service unavailable")
		case key == "refused":
			return Permanent(errors.New("400 bad request"))
		case key == "noconsent":
			return Permanent(ErrNoConsent)
		}
		return nil
	}
	if err := o.Register(d, fastConfig()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	if _, err := o.Add(&Message{Key: "good", Destination: "hook"}, &Message{Key: "bad", Destination: "hook"},
		&Message{Key: "refused", Destination: "hook"}, &Message{Key: "noconsent", Destination: "hook"}); err != nil {
		t.Fatal(err)
	}
	waitKeys(t, d, 1+3+1+1) // bad is tried MaxAttempts times
	deadline := time.Now().Add(5 * time.Second)
	var dead []*Message
	for time.Now().Before(deadline) {
		if dead, _ = o.List(StateDead, 10); len(dead) == 2 {
			break
		}
		time.Sleep(time.Millisecond) // polling the worker goroutine, not a clock
	}
	if len(dead) != 2 || dead[0].Key != "bad" || dead[0].Attempts != 3 || dead[1].Key != "refused" || dead[1].Attempts != 1 {
		t.Fatalf("dead = %+v, want bad after 3 tries and refused after 1", dead)
	}
	if got := testutil.ToFloat64(o.metrics.Retried.WithLabelValues("hook")); got != 2 {
		t.Errorf("retries = %v, want 2", got)
	}
	if got := testutil.ToFloat64(o.metrics.Suppressed.WithLabelValues("hook")); got != 1 {
		t.Errorf("suppressed = %v, want 1", got)
	}
	// An admin retries the dead message once the destination works again.
	broken = false
	if err := o.Retry(dead[0].Seq); err != nil {
		t.Fatal(err)
	}
	waitKeys(t, d, 1)
	if err := o.Drop(dead[1].Seq); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		if dead, _ = o.List(StateDead, 10); len(dead) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(dead) != 0 {
		t.Fatalf("dead after retry and drop = %+v", dead)
	}
	if d.count("good") != 1 || d.count("bad") != 4 {
		t.Errorf("deliveries good=%d bad=%d, want 1 and 4", d.count("good"), d.count("bad"))
	}
	// The outcome of the retried message is recorded after its delivery
	// is settled, by the worker: wait for it.
	outcomes := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(recorded)
	}
	for time.Now().Before(deadline) && len(outcomes()) < 2 {
		time.Sleep(time.Millisecond)
	}
	if got := outcomes(); len(got) != 2 {
		t.Errorf("outcomes recorded = %v, want good and bad", got)
	}
	if err := o.Drop(999); !errors.Is(err, ErrNotFound) {
		t.Errorf("drop of nothing = %v", err)
	}
}

// A restart in the middle loses nothing and, for what our stand-in saw
// settled, sends nothing twice.
func TestRestartLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	db := openDB(t, path)
	o, err := NewOutbox(db, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*Message
	for i := range 200 {
		msgs = append(msgs, &Message{Key: fmt.Sprintf("k%03d", i), Destination: "hook"})
	}
	if _, err := o.Add(msgs...); err != nil {
		t.Fatal(err)
	}
	d := newCounting("hook")
	cfg := fastConfig()
	cfg.Concurrency = 1
	if err := o.Register(d, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { o.Run(ctx); close(stopped) }()
	waitKeys(t, d, 50)
	cancel()
	<-stopped
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	o2, err := NewOutbox(db, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o2.Add(msgs...); err != nil { // a replay of the same steps
		t.Fatal(err)
	}
	if err := o2.Register(d, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go o2.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if q, _ := o2.List(StateQueued, 1); len(q) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for _, m := range msgs {
		if n := d.count(m.Key); n != 1 {
			t.Errorf("%s delivered %d times, want 1", m.Key, n)
		}
	}
}

func TestBatchWindowGathers(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	o, _ := NewOutbox(db, OutboxOptions{})
	d := newCounting("meta:retargeting")
	cfg := fastConfig()
	cfg.BatchSize, cfg.BatchWindow, cfg.Concurrency = 100, 50*time.Millisecond, 1
	if err := o.Register(d, cfg); err != nil {
		t.Fatal(err)
	}
	var msgs []*Message
	for i := range 30 {
		msgs = append(msgs, &Message{Key: fmt.Sprint(i), Destination: "meta:retargeting"})
	}
	if _, err := o.Add(msgs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	waitKeys(t, d, 30)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.batches) != 1 || d.batches[0] != 30 {
		t.Fatalf("batches = %v, want one of 30", d.batches)
	}
}

func TestBackoffIsBoundedWithJitter(t *testing.T) {
	o := &Outbox{jitter: func() float64 { return 0.999 }}
	cfg := DefaultDestinationConfig()
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 20: 5 * time.Minute} {
		got := o.backoff(cfg, attempts)
		if got > want || got < want/2 {
			t.Errorf("backoff(%d) = %s, want in [%s, %s]", attempts, got, want/2, want)
		}
	}
	o.jitter = func() float64 { return 0 }
	if got := o.backoff(cfg, 1); got != cfg.Backoff/2 {
		t.Errorf("backoff with no jitter = %s", got)
	}
}

// BenchmarkOutboxThroughput: messages/s from enqueue to settled through a
// no-op destination.
func BenchmarkOutboxThroughput(b *testing.B) {
	// fsync=on is as serve runs: each claim and each outcome a durable
	// commit.
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", map[bool]string{false: "off", true: "on"}[durable]), func(b *testing.B) {
			db := openDB(b, filepath.Join(b.TempDir(), "o.db"))
			db.NoSync = !durable
			defer db.Close()
			o, _ := NewOutbox(db, OutboxOptions{})
			d := newCounting("noop")
			d.done = make(chan string, b.N+1)
			cfg := DefaultDestinationConfig()
			cfg.BatchSize = 100
			if err := o.Register(d, cfg); err != nil {
				b.Fatal(err)
			}
			msgs := make([]*Message, b.N)
			for i := range msgs {
				msgs[i] = &Message{Key: fmt.Sprint("k", i), Destination: "noop"}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go o.Run(ctx)
			for i := 0; i < len(msgs); i += 1000 {
				if _, err := o.Add(msgs[i:min(i+1000, len(msgs))]...); err != nil {
					b.Fatal(err)
				}
			}
			for range b.N {
				<-d.done
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// After BreakAfter failed batches in a row the circuit opens: no delivery
// is tried until BreakFor has passed, then one probe goes through.
func TestCircuitBreakerOpens(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	o, _ := NewOutbox(db, OutboxOptions{Now: clock, Jitter: func() float64 { return 0 }})
	d := newCounting("flaky")
	d.fail = func(string, int) error { return errors.New("502 bad gateway") }
	cfg := fastConfig()
	cfg.BreakAfter, cfg.BreakFor, cfg.MaxAttempts, cfg.Concurrency = 2, time.Hour, 10, 1
	cfg.Backoff, cfg.MaxBackoff = time.Nanosecond, time.Nanosecond
	if err := o.Register(d, cfg); err != nil {
		t.Fatal(err)
	}
	l := o.lanes["flaky"]
	if _, err := o.Add(&Message{Key: "a", Destination: "flaky"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		batch, _, err := o.claim(l)
		if err != nil || len(batch) != 1 {
			t.Fatalf("claim = %v, %v", batch, err)
		}
		mu.Lock()
		now = now.Add(time.Second) // past the (tiny) backoff
		mu.Unlock()
		o.deliver(context.Background(), l, batch)
	}
	if w := o.breakerWait(l); w <= 0 || w > time.Hour {
		t.Fatalf("breaker wait = %s, want the circuit open for up to an hour", w)
	}
	if got := testutil.ToFloat64(o.metrics.Open.WithLabelValues("flaky")); got != 1 {
		t.Fatalf("circuit gauge = %v", got)
	}
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	if w := o.breakerWait(l); w != 0 {
		t.Fatalf("after BreakFor the circuit should be half open, wait = %s", w)
	}
	if got := testutil.ToFloat64(o.metrics.Open.WithLabelValues("flaky")); got != 0 {
		t.Fatalf("circuit gauge after half-open = %v", got)
	}
}

// TestFenceHoldsDeliveries: while the fence fails (a cluster node that
// lost the lease of the partition whose file holds this outbox), nothing
// is delivered and the messages stay queued as they were; once it passes,
// each is delivered once.
func TestFenceHoldsDeliveries(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	var fenced atomic.Bool
	fenced.Store(true)
	asked := make(chan struct{}, 100)
	o, err := NewOutbox(db, OutboxOptions{Fence: func() error {
		select {
		case asked <- struct{}{}:
		default:
		}
		if fenced.Load() {
			return errors.New("this node no longer holds the partition")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*Message
	for i := range 5 {
		msgs = append(msgs, &Message{Key: fmt.Sprintf("f%d", i), Destination: "hook"})
	}
	if _, err := o.Add(msgs...); err != nil {
		t.Fatal(err)
	}
	d := newCounting("hook")
	if err := o.Register(d, fastConfig()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() { o.Run(ctx); close(stopped) }()
	for range 2 { // asked, refused, and asked again after its pause
		<-asked
	}
	for _, m := range msgs {
		if n := d.count(m.Key); n != 0 {
			t.Fatalf("%s delivered %d times while fenced", m.Key, n)
		}
	}
	if q, _ := o.List(StateQueued, 10); len(q) != len(msgs) {
		t.Fatalf("%d queued while fenced, want %d", len(q), len(msgs))
	}
	fenced.Store(false)
	waitKeys(t, d, len(msgs))
	cancel()
	<-stopped
	for _, m := range msgs {
		if n := d.count(m.Key); n != 1 {
			t.Errorf("%s delivered %d times, want 1", m.Key, n)
		}
	}
}
