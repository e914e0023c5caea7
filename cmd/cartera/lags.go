package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// Backpressure on cluster nodes: every node tells the others, each
// second, how many records each partition it holds is behind
// (jetstream.Node.Lags, over NATS: lagTopic), and a node's ingestion
// refuses a batch bound for a partition whose holder is more than
// profiles.log.max_lag_events behind (503 with Retry-After, nothing of it
// acknowledged), as serve does when its one applier lags. A partition
// whose holder said nothing for lagStale (dead, or the partition moving)
// is not held against anyone.

// lagTopic is the broadcast topic of the partitions' lags.
const lagTopic = "lag"

// lagEvery is how often a node tells its partitions' lags; lagStale is
// how old a partition's last lag may be before it is not held against it.
const (
	lagEvery = time.Second
	lagStale = 5 * lagEvery
)

// clusterLags are the partitions' lags as the nodes told them.
type clusterLags struct {
	max uint64
	now func() time.Time

	mu sync.Mutex
	by map[int]partitionLag
}

type partitionLag struct {
	events uint64
	at     time.Time
}

func newClusterLags(maxEvents int, now func() time.Time) *clusterLags {
	return &clusterLags{max: uint64(maxEvents), now: now, by: map[int]partitionLag{}}
}

// heard takes a node's report: partition (decimal) → records behind.
func (cl *clusterLags) heard(data []byte) {
	var report map[string]uint64
	if json.Unmarshal(data, &report) != nil {
		return
	}
	at := cl.now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for k, n := range report {
		if p, err := strconv.Atoi(k); err == nil {
			cl.by[p] = partitionLag{events: n, at: at}
		}
	}
}

// admit refuses a batch bound for a partition past the bound
// (jetstream.RouterConfig.Admit).
func (cl *clusterLags) admit(partitions []int) error {
	now := cl.now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, p := range partitions {
		l, ok := cl.by[p]
		if ok && now.Sub(l.at) < lagStale && l.events > cl.max {
			return &profiles.ErrBacklogged{Events: l.events, RetryAfter: lagEvery}
		}
	}
	return nil
}

// tellLags broadcasts the lags of the partitions node holds every
// lagEvery until ctx ends.
func tellLags(ctx context.Context, l *jetstream.Log, node *jetstream.Node, log *slog.Logger) {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		report := map[string]uint64{}
		for p, n := range node.Lags() {
			report[strconv.Itoa(p)] = n
		}
		data, err := json.Marshal(report)
		if err == nil {
			err = l.Broadcast(lagTopic, data)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("cluster: tell the partitions' lags", "err", err)
		}
	}
}
