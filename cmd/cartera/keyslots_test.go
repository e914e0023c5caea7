package main

import (
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"cartera/profiles"
)

// slotsApp is an ingestion route behind l.ingestLimit whose handler, for
// a request with ?id=, says it entered, and with ?hold=1 too waits to be
// released.
func slotsApp(t *testing.T, l *edgeLimits) (post func(key, query string) (int, string), entered chan string, release chan struct{}) {
	t.Helper()
	sources, err := profiles.NewSources([]profiles.SourceConfig{
		{Name: "web", WriteKeys: []string{"flood_key_0123456789"}},
		{Name: "pos", WriteKeys: []string{"trickle_key_0123456789"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	entered, release = make(chan string, 16), make(chan struct{})
	app := fiber.New(fiber.Config{ErrorHandler: (&api{}).errorHandler})
	app.Post("/v1/batch", l.ingestLimit(sources), func(c *fiber.Ctx) error {
		if id := c.Query("id"); id != "" {
			entered <- id
		}
		if c.Query("hold") != "" {
			<-release
		}
		setAccepted(c, 1)
		return c.JSON(fiber.Map{"success": true})
	})
	post = func(key, query string) (int, string) {
		req := httptest.NewRequest("POST", "/v1/batch?"+query, strings.NewReader(`{"batch":[]}`))
		req.SetBasicAuth(key, "")
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	return post, entered, release
}

// waitFor spins until cond holds (the requests it waits on run in other
// goroutines); the test's own deadline bounds it.
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

// TestWriteKeyConcurrency: with write_key_concurrency 2, a third request
// of a key that has two in its handler does not enter it, parked until
// one finishes, and is counted; another key's request goes straight
// through meanwhile. Without the cap the third one would enter at once.
func TestWriteKeyConcurrency(t *testing.T) {
	cfg := DefaultLimitsConfig()
	cfg.WriteKeyConcurrency = 2
	cfg.RefusalDelay = 0
	l := newEdgeLimits(cfg, nil)
	post, entered, release := slotsApp(t, l)
	id := func(key string) string { return keyID(key) }

	done := make(chan int, 3)
	for i := range 3 {
		go func() {
			st, _ := post("flood_key_0123456789", fmt.Sprintf("hold=1&id=f%d", i))
			done <- st
		}()
	}
	// Two enter; the third waits for a slot.
	<-entered
	<-entered
	waitFor(func() bool { return testutil.ToFloat64(l.slots.waited) == 1 || len(entered) > 0 })
	select {
	case who := <-entered:
		t.Fatalf("request %s entered the handler while its key had two there", who)
	default:
	}
	if n := l.slots.running(id("flood_key_0123456789")); n != 2 {
		t.Fatalf("%d requests of the flooding key hold a slot, want 2", n)
	}
	// Another key is not held behind them.
	if st, _ := post("trickle_key_0123456789", ""); st != 200 {
		t.Fatalf("other key while the first has its two: %d", st)
	}
	// One finishes: the parked one enters, then all three answer 200.
	release <- struct{}{}
	<-entered
	release <- struct{}{}
	release <- struct{}{}
	for range 3 {
		if st := <-done; st != 200 {
			t.Errorf("flood request: %d, want 200", st)
		}
	}
	if n := l.slots.running(id("flood_key_0123456789")); n != 0 {
		t.Errorf("%d slots still held after every request finished", n)
	}
	if len(l.slots.keys) != 0 {
		t.Errorf("slots kept for %d keys with no request", len(l.slots.keys))
	}
}

// TestWriteKeyConcurrencyRefusesAfterWaiting: a request that finds no
// slot free within its wait gets a 429 with Retry-After, counted as
// limits.write_key_concurrency, and never enters the handler.
func TestWriteKeyConcurrencyRefusesAfterWaiting(t *testing.T) {
	l := oneSlotLimits()
	post, entered, release := slotsApp(t, l)

	done := make(chan int, 1)
	go func() {
		st, _ := post("flood_key_0123456789", "hold=1&id=first")
		done <- st
	}()
	<-entered
	st, retry := post("flood_key_0123456789", "id=second")
	if st != 429 || retry != "1" {
		t.Errorf("second request with the only slot taken: %d, Retry-After %q; want 429, 1", st, retry)
	}
	if got := testutil.ToFloat64(l.limited.WithLabelValues("write_key_concurrency")); got != 1 {
		t.Errorf("cartera_requests_limited_total{limit=write_key_concurrency} %v, want 1", got)
	}
	close(release)
	if st := <-done; st != 200 {
		t.Errorf("first request: %d", st)
	}
	select {
	case who := <-entered:
		t.Errorf("refused request %s entered the handler", who)
	default:
	}
	if len(l.slots.keys) != 0 {
		t.Errorf("slots kept for %d keys with no request", len(l.slots.keys))
	}
}

// TestPaceSlotNotTakenByARequestRefusedForConcurrency: under load, with
// one request of the flooding key at a time, a request that finds the
// key's only slot taken is refused for that, and takes nothing of the
// key's pace: once the slot is free, the next request at the same instant
// goes in at its pace slot. (Checked before the concurrency cap, the fair
// share reserved the slot for the refused request, and refused the next
// one for its share.)
func TestPaceSlotNotTakenByARequestRefusedForConcurrency(t *testing.T) {
	l := oneSlotLimits()
	var mu sync.Mutex
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	l.watchLag(func() (uint64, time.Duration) { return 1 << 20, time.Minute }) // always under load
	flood, trickle := keyID("flood_key_0123456789"), keyID("trickle_key_0123456789")
	for range 30 {
		l.fairAccepted(flood, 100, l.now())
		l.fairAccepted(trickle, 1, l.now())
	}
	post, entered, release := slotsApp(t, l)

	advance(time.Second)
	done := make(chan int, 1)
	go func() {
		st, _ := post("flood_key_0123456789", "hold=1&id=first")
		done <- st
	}()
	<-entered // paced in at its slot, holding the key's only slot
	advance(time.Second)
	if st, _ := post("flood_key_0123456789", "id=second"); st != 429 {
		t.Fatalf("second request with the key's slot taken: %d, want 429", st)
	}
	if got := testutil.ToFloat64(l.limited.WithLabelValues("write_key_concurrency")); got != 1 {
		t.Errorf("refused for concurrency %v times, want 1", got)
	}
	close(release)
	if st := <-done; st != 200 {
		t.Fatalf("first request: %d", st)
	}
	if st, retry := post("flood_key_0123456789", "id=third"); st != 200 {
		t.Errorf("third request, its pace slot free: %d (Retry-After %q), want 200", st, retry)
	}
	if got := testutil.ToFloat64(l.fair.paced.WithLabelValues("web")); got != 2 {
		t.Errorf("paced %v requests, want 2 (the first and the third)", got)
	}
	if got := testutil.ToFloat64(l.limited.WithLabelValues("fair_share")); got != 0 {
		t.Errorf("refused for the fair share %v times, want 0", got)
	}
}

// oneSlotLimits are limits that handle one request of a write key at a
// time, refuse another after a millisecond's wait, and never hold a 429.
func oneSlotLimits() *edgeLimits {
	cfg := DefaultLimitsConfig()
	cfg.WriteKeyConcurrency = 1
	cfg.RefusalDelay = 0
	l := newEdgeLimits(cfg, nil)
	l.slotWait = time.Millisecond
	return l
}
