package main

import (
	"sync"

	"golang.org/x/time/rate"

	"cartera/channels"
)

// nodePaces are a cluster node's pacers of its destinations with a rate
// (channels.DestinationConfig.Rate, a platform's API quota): one per
// destination, shared by the outboxes of every partition the node holds,
// at the node's share of the rate, the share of the partitions it holds.
// The nodes' shares add up to the rate while they hold every partition
// between them; each partition's outbox batches its own people.
type nodePaces struct {
	partitions int

	mu   sync.Mutex
	held int
	by   map[string]*nodePace
}

// nodePace is one destination's pacer and the rate it is a share of.
type nodePace struct {
	lim  *rate.Limiter
	rate float64
}

func newNodePaces(partitions int) *nodePaces {
	return &nodePaces{partitions: partitions, by: map[string]*nodePace{}}
}

// pacer is the node's pacer of dest (appOptions.Pace).
func (np *nodePaces) pacer(dest string, cfg channels.DestinationConfig) channels.Pacer {
	np.mu.Lock()
	defer np.mu.Unlock()
	if p, ok := np.by[dest]; ok {
		return p.lim
	}
	p := &nodePace{lim: rate.NewLimiter(np.share(cfg.Rate), 1), rate: cfg.Rate}
	np.by[dest] = p
	return p.lim
}

// hold says how many partitions the node holds now; every pacer moves to
// the new share.
func (np *nodePaces) hold(n int) {
	np.mu.Lock()
	defer np.mu.Unlock()
	np.held = n
	for _, p := range np.by {
		p.lim.SetLimit(np.share(p.rate))
	}
}

// share is the node's share of r; np.mu is held.
func (np *nodePaces) share(r float64) rate.Limit {
	return rate.Limit(r * float64(max(np.held, 1)) / float64(max(np.partitions, 1)))
}
