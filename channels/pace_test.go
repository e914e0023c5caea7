package channels

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// tokens is a Pacer that lets a delivery go for each token the test puts
// in, and counts the waits.
type tokens struct {
	ch    chan struct{}
	mu    sync.Mutex
	waits int
}

func (p *tokens) Wait(ctx context.Context) error {
	p.mu.Lock()
	p.waits++
	p.mu.Unlock()
	select {
	case <-p.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A destination with a rate is paced: each Deliver call waits for the
// pacer first (one the outbox's options give, shared on a cluster node),
// so no more calls go than the pacer lets through; one without a rate is
// not paced.
func TestDeliveriesWaitForThePacer(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	pacer := &tokens{ch: make(chan struct{})}
	var asked []string
	o, err := NewOutbox(db, OutboxOptions{Pace: func(dest string, cfg DestinationConfig) Pacer {
		asked = append(asked, fmt.Sprintf("%s@%g", dest, cfg.Rate))
		return pacer
	}})
	if err != nil {
		t.Fatal(err)
	}
	paced, free := newCounting("meta:retargeting"), newCounting("webhook")
	cfg := fastConfig()
	cfg.Concurrency, cfg.Rate = 2, 5
	if err := o.Register(paced, cfg); err != nil {
		t.Fatal(err)
	}
	if err := o.Register(free, fastConfig()); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "meta:retargeting@5" {
		t.Fatalf("pacers asked for %v, want the paced destination's only", asked)
	}
	bad := fastConfig()
	bad.Rate = -1
	if err := o.Register(newCounting("x"), bad); err == nil {
		t.Error("a negative rate was accepted")
	}
	for i := range 6 {
		if _, err := o.Add(&Message{Key: fmt.Sprintf("p%d", i), Destination: paced.name}, &Message{Key: fmt.Sprintf("f%d", i), Destination: free.name}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	waitKeys(t, free, 6) // not paced
	for range 3 {
		pacer.ch <- struct{}{}
	}
	waitKeys(t, paced, 3)
	waitFor(t, "the fourth delivery waiting for the pacer", func() bool {
		pacer.mu.Lock()
		defer pacer.mu.Unlock()
		return pacer.waits >= 4
	})
	paced.mu.Lock()
	calls := len(paced.batches)
	paced.mu.Unlock()
	if calls != 3 {
		t.Fatalf("%d deliveries with 3 tokens given, want 3", calls)
	}
	for range 3 {
		pacer.ch <- struct{}{}
	}
	waitKeys(t, paced, 3)
}
