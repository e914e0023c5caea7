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
// second, how far behind each partition it holds is (jetstream.Node.Lags,
// over NATS: lagTopic): how many records, and how long ago the oldest of
// them was stored. A node's ingestion refuses a batch bound for a
// partition whose holder is more than profiles.log.max_lag_events records
// or profiles.log.max_lag behind (503 with Retry-After, nothing of it
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
	maxEvents uint64
	maxAge    time.Duration
	now       func() time.Time

	mu sync.Mutex
	by map[int]partitionLag
}

type partitionLag struct {
	jetstream.Lag
	at time.Time
}

// lagReport is what a node tells of one partition: records behind, and the
// age of the oldest in milliseconds.
type lagReport struct {
	Events uint64 `json:"events"`
	AgeMS  int64  `json:"age_ms,omitempty"`
}

func newClusterLags(cfg profiles.LogConfig, now func() time.Time) *clusterLags {
	return &clusterLags{maxEvents: uint64(cfg.MaxLagEvents), maxAge: cfg.MaxLag, now: now, by: map[int]partitionLag{}}
}

// heard takes a node's report: partition (decimal) → its lag. (A node of
// the version before sent the records behind alone.)
func (cl *clusterLags) heard(data []byte) {
	var report map[string]lagReport
	if json.Unmarshal(data, &report) != nil {
		var events map[string]uint64
		if json.Unmarshal(data, &events) != nil {
			return
		}
		report = make(map[string]lagReport, len(events))
		for k, n := range events {
			report[k] = lagReport{Events: n}
		}
	}
	at := cl.now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for k, r := range report {
		if p, err := strconv.Atoi(k); err == nil {
			cl.by[p] = partitionLag{Lag: jetstream.Lag{Events: r.Events, Age: time.Duration(r.AgeMS) * time.Millisecond}, at: at}
		}
	}
}

// told is partition p's lag as its holder told it within lagStale.
func (cl *clusterLags) told(p int) (partitionLag, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	l, ok := cl.by[p]
	return l, ok && cl.now().Sub(l.at) < lagStale
}

// admit refuses a batch bound for a partition past a bound
// (jetstream.RouterConfig.Admit).
func (cl *clusterLags) admit(partitions []int) error {
	now := cl.now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, p := range partitions {
		l, ok := cl.by[p]
		if ok && now.Sub(l.at) < lagStale && (l.Events > cl.maxEvents || l.Age > cl.maxAge) {
			return &profiles.ErrBacklogged{Events: l.Events, Lag: l.Age, RetryAfter: lagEvery}
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
		report := map[string]lagReport{}
		// The ages are by the stream's store times: the real clock, not
		// a dev clock.
		for p, lag := range node.Lags(ctx, time.Now()) {
			report[strconv.Itoa(p)] = lagReport{Events: lag.Events, AgeMS: lag.Age.Milliseconds()}
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
