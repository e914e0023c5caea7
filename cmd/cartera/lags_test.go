package main

import (
	"errors"
	"testing"
	"time"

	"cartera/internal/clocktest"
	"cartera/profiles"
)

// A node's ingestion refuses a batch bound for a partition whose holder
// said it is past profiles.log.max_lag_events behind, with how far and
// when to retry; a partition under the bound, one nobody spoke of, and one
// whose holder has said nothing for lagStale are not held against it.
func TestClusterLagsAdmit(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	cl := newClusterLags(100, clock.Now)
	cl.heard([]byte(`{"3": 250, "4": 100}`))
	cl.heard([]byte(`not json`))
	for _, tc := range []struct {
		parts []int
		lag   uint64 // 0: admitted
	}{
		{[]int{4}, 0},
		{[]int{5}, 0},
		{[]int{4, 3}, 250},
	} {
		err := cl.admit(tc.parts)
		var bl *profiles.ErrBacklogged
		switch {
		case tc.lag == 0 && err != nil:
			t.Errorf("admit %v: %v, want admitted", tc.parts, err)
		case tc.lag > 0 && (!errors.As(err, &bl) || bl.Events != tc.lag || bl.RetryAfter != lagEvery):
			t.Errorf("admit %v: %v, want refused %d behind, retry after %s", tc.parts, err, tc.lag, lagEvery)
		}
	}
	clock.Advance(lagStale)
	if err := cl.admit([]int{3}); err != nil {
		t.Errorf("admit after %s of silence: %v, want admitted", lagStale, err)
	}
	cl.heard([]byte(`{"3": 101}`))
	if err := cl.admit([]int{3}); err == nil {
		t.Error("admitted past the bound after a new report")
	}
}
