package journeys

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestRunStopsBetweenBatches: a shutdown does not wait for the backlog of
// due timers: with ctx ended, Run returns and FireDue fires nothing; the
// timers stay for the restart.
func TestRunStopsBetweenBatches(t *testing.T) {
	h := newHarness(t, openPolicy, map[string]string{"reminder.yaml": reminderJourney})
	for i := range 20 {
		h.track(fmt.Sprintf("p%02d", i), "Product Added", nil)
	}
	h.clock.Set(t0.Add(2 * time.Hour)) // all 20 reminders are due
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.engine.Run(ctx, h.store)
	if n, err := h.engine.FireDue(ctx, h.store, h.clock.Now(), 100); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("FireDue after the shutdown = %d, %v; want 0, context.Canceled", n, err)
	}
	if got := h.count("reminder", "idle", "waiting"); got != 20 {
		t.Errorf("waiting after the shutdown = %d, want all 20 timers kept", got)
	}
	if n := h.fire(h.clock.Now()); n != 20 {
		t.Errorf("fired after the restart = %d, want 20", n)
	}
}
