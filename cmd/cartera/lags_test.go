package main

import (
	"errors"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/profiles"
)

// A node's ingestion refuses a batch bound for a partition whose holder
// said it is past profiles.log.max_lag_events records or
// profiles.log.max_lag behind, with how far and when to retry; a
// partition under the bounds, one nobody spoke of, and one whose holder
// has said nothing for lagStale are not held against it. A report of the
// version before (records behind alone) still counts.
func TestClusterLagsAdmit(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	cfg := profiles.DefaultConfig().Log
	cfg.MaxLagEvents, cfg.MaxLag = 100, 30*time.Second
	cl := newClusterLags(cfg, clock.Now)
	cl.heard([]byte(`{"3": {"events": 250, "age_ms": 2000}, "4": {"events": 100, "age_ms": 30000}, "6": {"events": 5, "age_ms": 30001}}`))
	cl.heard([]byte(`{"7": 101, "8": 100}`))
	cl.heard([]byte(`not json`))
	for _, tc := range []struct {
		parts  []int
		events uint64 // 0: admitted
		age    time.Duration
	}{
		{[]int{4}, 0, 0},
		{[]int{5}, 0, 0},
		{[]int{8}, 0, 0},
		{[]int{4, 3}, 250, 2 * time.Second},
		{[]int{6}, 5, 30001 * time.Millisecond},
		{[]int{7}, 101, 0},
	} {
		err := cl.admit(tc.parts)
		var bl *profiles.ErrBacklogged
		switch {
		case tc.events == 0 && err != nil:
			t.Errorf("admit %v: %v, want admitted", tc.parts, err)
		case tc.events > 0 && (!errors.As(err, &bl) || bl.Events != tc.events || bl.Lag != tc.age || bl.RetryAfter != lagEvery):
			t.Errorf("admit %v: %v, want refused %d behind for %s, retry after %s", tc.parts, err, tc.events, tc.age, lagEvery)
		}
	}
	clock.Advance(lagStale)
	if err := cl.admit([]int{3}); err != nil {
		t.Errorf("admit after %s of silence: %v, want admitted", lagStale, err)
	}
	cl.heard([]byte(`{"3": {"events": 101}}`))
	if err := cl.admit([]int{3}); err == nil {
		t.Error("admitted past the bound after a new report")
	}
}
