package journeys

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// cardJourney updates the person's pass when they sign up.
const cardJourney = `
id: card
trigger:
  event: Signed Up
steps:
  - id: refresh
    update_pass: {push: "Welcome aboard"}
`

// TestDrainOutboxPoisonDoesNotBlock: a record that cannot be read and a
// wallet update that always fails do not hold back the emails behind
// them; each failure is counted on its own action, and a poisoned one
// moves to the dead letters, after which the outbox is empty.
func TestDrainOutboxPoisonDoesNotBlock(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney, "card.yaml": cardJourney})
	h.track("ana", "Signed Up", nil)
	h.track("bea", "Signed Up", nil)
	// An undecodable record ahead of everything (sequences start at 1).
	if err := h.store.DB().Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOutbox).Put(u64(0), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}

	walletDown := errors.New("wallet: template gone")
	var sent []string
	tries := map[string]int{}
	deliver := func(_ context.Context, a Action) error {
		tries[a.Key]++
		if a.Action == ActPassUpdate {
			return walletDown
		}
		sent = append(sent, a.Profile)
		return nil
	}
	n, err := h.engine.DrainOutbox(context.Background(), deliver, 100)
	if n != 2 || !errors.Is(err, walletDown) {
		t.Fatalf("first drain = %d, %v; want both emails delivered and the wallet failure reported", n, err)
	}
	if len(sent) != 2 {
		t.Fatalf("emails sent = %v, want ana's and bea's", sent)
	}

	// The failing updates are tried again after a backoff, then given up.
	for range 2 * OutboxMaxAttempts {
		h.clock.Advance(time.Hour)
		if _, err := h.engine.DrainOutbox(context.Background(), deliver, 100); err != nil && !errors.Is(err, walletDown) {
			t.Fatal(err)
		}
	}
	for k, n := range tries {
		if strings.Contains(k, "refresh") && n != OutboxMaxAttempts {
			t.Errorf("wallet update %s tried %d times, want %d", k, n, OutboxMaxAttempts)
		}
	}
	if len(sent) != 2 {
		t.Errorf("emails sent = %v, want each once", sent)
	}
	dead, err := h.engine.DeadActions(10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range dead {
		kinds = append(kinds, d.Action)
		if d.Error == "" {
			t.Errorf("dead action %d has no error", d.Seq)
		}
	}
	slices.Sort(kinds)
	if want := []string{"", ActPassUpdate, ActPassUpdate}; !slices.Equal(kinds, want) {
		t.Errorf("dead letters = %q, want the unreadable record and both wallet updates", kinds)
	}
	if err := h.store.DB().View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketOutbox).Cursor().First(); k != nil {
			t.Errorf("outbox still holds %x", k)
		}
		if b := tx.Bucket(bucketOutboxFails); b != nil && b.Stats().KeyN != 0 {
			t.Errorf("failure counts left: %d", b.Stats().KeyN)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestDrainOutboxStopsOnShutdown: a delivery cut short by a cancelled
// context is not a failure: the action stays, with no attempt counted.
func TestDrainOutboxStopsOnShutdown(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"welcome.yaml": welcomeJourney})
	h.track("ana", "Signed Up", nil)
	h.track("bea", "Signed Up", nil)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	n, err := h.engine.DrainOutbox(ctx, func(ctx context.Context, a Action) error {
		calls++
		cancel()
		return ctx.Err()
	}, 100)
	if n != 0 || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("DrainOutbox = %d, %v after %d calls; want 0, context.Canceled after 1", n, err, calls)
	}
	if err := h.store.DB().View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketOutboxFails); b != nil && b.Stats().KeyN != 0 {
			t.Errorf("a shutdown counted %d failures", b.Stats().KeyN)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := h.drain(); len(got) != 2 {
		t.Errorf("after restart: %d delivered, want 2", len(got))
	}
}
