package main

import (
	"testing"

	"golang.org/x/time/rate"

	"cartera/channels"
)

// A node's pacer of a destination is one for all its partitions' outboxes,
// at the node's share of the destination's rate: the share of the
// partitions it holds, moving as it claims and gives them up.
func TestNodePacesShareTheRate(t *testing.T) {
	np := newNodePaces(8)
	cfg := channels.DefaultDestinationConfig()
	cfg.Rate = 16
	p := np.pacer("meta:retargeting", cfg)
	if again := np.pacer("meta:retargeting", cfg); again != p {
		t.Fatal("two pacers for one destination on one node")
	}
	other := np.pacer("google:retargeting", channels.DestinationConfig{Rate: 4})
	for _, tc := range []struct {
		held        int
		meta, other rate.Limit
	}{
		{0, 2, 0.5}, // holding none yet: as if one
		{2, 4, 1},
		{8, 16, 4},
		{3, 6, 1.5},
	} {
		np.hold(tc.held)
		if got := p.(*rate.Limiter).Limit(); got != tc.meta {
			t.Errorf("holding %d of 8: meta's pace %v, want %v", tc.held, got, tc.meta)
		}
		if got := other.(*rate.Limiter).Limit(); got != tc.other {
			t.Errorf("holding %d of 8: google's pace %v, want %v", tc.held, got, tc.other)
		}
	}
}
