package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cartera/profiles"
	"cartera/profiles/eventlog"
	"cartera/profiles/jetstream"
)

// readWait bounds how long a read that must see every event acknowledged
// before it (admin API, wallet web service, tracking links) waits for
// them to be applied; past it, the read answers 503.
const readWait = 2 * time.Second

// eventLogDir is where serve keeps the event log by default: beside the
// bbolt file.
func eventLogDir(data string) string { return data + ".log" }

// logDir is where serve keeps the event log: profiles.log.dir, or beside
// the bbolt file.
func logDir(cfg *Config) string {
	if cfg.Profiles.Log.Dir != "" {
		return cfg.Profiles.Log.Dir
	}
	return eventLogDir(cfg.Data)
}

// openEventLog opens the event log of the store and makes ingestion
// acknowledge on it. An empty log starts after the last offset the store
// applied, so that a removed log directory does not reuse offsets.
func openEventLog(cfg *Config, store *profiles.Store, log *slog.Logger) (*eventlog.Log, error) {
	dir := logDir(cfg)
	if beside := eventLogDir(cfg.Data); filepath.Clean(dir) != filepath.Clean(beside) {
		// Events acknowledged and not applied may be in the old place:
		// a new, empty log elsewhere would lose them.
		if segs, _ := filepath.Glob(filepath.Join(beside, "*")); len(segs) > 0 {
			return nil, fmt.Errorf("profiles.log.dir: the event log is at %s and the setting says %s: stop the gateway, move the files of %s into %s, then start it", beside, dir, beside, dir)
		}
	}
	l, err := eventlog.Open(dir, eventlog.Options{
		SegmentBytes: cfg.Profiles.Log.SegmentBytes,
		FirstOffset:  store.AppliedOffset() + 1,
		Logger:       log.With("component", "eventlog"),
	})
	if err != nil {
		return nil, err
	}
	// A store older than the log's first segment (a backup restored
	// after its events were trimmed) would wait forever for records
	// that are gone: say so instead of serving.
	if first, applied := l.Segments()[0].First, store.AppliedOffset(); applied+1 < first {
		_ = l.Close()
		return nil, fmt.Errorf("event log %s starts at offset %d but the store applied only up to %d: the events between were trimmed; move the log folder away to start a new one (those events are lost to this store)", dir, first, applied)
	}
	if err := store.AttachLog(l); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// caughtUp lets a request through once every event acknowledged before it
// is applied (at most readWait; then 503 with Retry-After).
func (a *api) caughtUp(c *fiber.Ctx) error {
	if a.readAfter != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), readWait)
		err := a.readAfter(ctx)
		cancel()
		if err != nil {
			c.Set(fiber.HeaderRetryAfter, "1")
			return &httpError{fiber.StatusServiceUnavailable, "events acknowledged before this request are still being applied: retry"}
		}
		return c.Next()
	}
	target := a.store.LogCommitted()
	if target > a.store.AppliedOffset() {
		ctx, cancel := context.WithTimeout(c.UserContext(), readWait)
		err := a.store.WaitApplied(ctx, target)
		cancel()
		if err != nil {
			c.Set(fiber.HeaderRetryAfter, "1")
			return &httpError{fiber.StatusServiceUnavailable, "events acknowledged before this request are still being applied: retry"}
		}
	}
	return c.Next()
}

// appendFailed answers an ingestion the event log did not take: 503 with
// Retry-After when applying lags past its bound or the log cannot write
// (a full disk); nothing of the request was acknowledged.
func (a *api) appendFailed(c *fiber.Ctx, source string, err error) error {
	var bl *profiles.ErrBacklogged
	var held *errHeld
	switch {
	case errors.As(err, &held):
		a.metrics.Rejected.WithLabelValues(source, "held").Inc()
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(holdRetry.Seconds()))))
		return &httpError{fiber.StatusServiceUnavailable, held.Error()}
	case errors.As(err, &bl):
		a.metrics.Rejected.WithLabelValues(source, "backlog").Inc()
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(bl.RetryAfter.Seconds()))))
		return &httpError{fiber.StatusServiceUnavailable, bl.Error()}
	case errors.Is(err, profiles.ErrClosed), errors.Is(err, eventlog.ErrClosed), errors.Is(err, jetstream.ErrClosed), errors.Is(err, context.Canceled):
		return profiles.ErrClosed
	}
	a.metrics.Rejected.WithLabelValues(source, "internal").Inc()
	a.log.Error("append to the event log", "source", source, "err", err)
	c.Set(fiber.HeaderRetryAfter, "5")
	return &httpError{fiber.StatusServiceUnavailable, "the event log cannot take events now (nothing was accepted): retry"}
}

// servedLog is the event log serve acknowledges on: the local one, or a
// JetStream stream in cluster mode (exactly one is set).
type servedLog struct {
	local   *eventlog.Log
	cluster *jetstream.Log
	// index is the cluster's identity index in front of cluster (nil:
	// none).
	index *jetstream.Router
}

func (l servedLog) close() error {
	if l.cluster != nil {
		return l.cluster.Close()
	}
	return l.local.Close()
}

// openLog opens the event log the config asks for, attaches it to the
// store and registers its metrics.
func openLog(ctx context.Context, cfg *Config, store *profiles.Store, trust profiles.SourceTrust, reg prometheus.Registerer, log *slog.Logger) (servedLog, error) {
	if cfg.Cluster.URL != "" {
		cl, err := openClusterLog(ctx, cfg, store, trust, log)
		if err != nil {
			return servedLog{}, err
		}
		log.Info("cluster mode: the event log is on JetStream", "stream", cfg.Cluster.Stream, "partitions", cfg.Cluster.Partitions, "replicas", cfg.Cluster.Replicas, "identity_index", cl.router != nil)
		registerLogMetrics(reg, cl.log, store)
		if cl.router != nil {
			registerIndexMetrics(reg, cl.router)
		}
		return servedLog{cluster: cl.log, index: cl.router}, nil
	}
	l, err := openEventLog(cfg, store, log)
	if err != nil {
		return servedLog{}, err
	}
	registerLogMetrics(reg, l, store)
	reg.MustRegister(
		gauge("cartera_eventlog_bytes", "Bytes in the event log's segments.", func() float64 { return float64(l.Bytes()) }),
		gauge("cartera_eventlog_segments", "Segment files of the event log.", func() float64 { return float64(len(l.Segments())) }),
	)
	return servedLog{local: l}, nil
}

func gauge(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

// registerLogMetrics exposes the event log's offsets and the lag of
// applying it.
func registerLogMetrics(reg prometheus.Registerer, l profiles.EventLog, store *profiles.Store) {
	reg.MustRegister(
		gauge("cartera_eventlog_appended_offset", "Offset of the last event acknowledged (durable in the log).", func() float64 { return float64(l.Committed()) }),
		gauge("cartera_eventlog_applied_offset", "Offset of the last event applied to profiles, rules and journeys.", func() float64 { return float64(store.AppliedOffset()) }),
		gauge("cartera_eventlog_lag_events", "Events acknowledged and not yet applied.", func() float64 { n, _ := store.Lag(); return float64(n) }),
		gauge("cartera_eventlog_lag_seconds", "Age of the oldest event acknowledged and not yet applied.", func() float64 { _, d := store.Lag(); return d.Seconds() }),
	)
}

// registerIndexMetrics exposes the counts of the cluster's identity index
// as this node's router sees them.
func registerIndexMetrics(reg prometheus.Registerer, r *jetstream.Router) {
	counter := func(name, help string, f func(jetstream.RouterStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(r.Stats())) })
	}
	reg.MustRegister(
		counter("cartera_identity_index_cache_hits_total", "Events routed to their profile from the router's cache of the identity index (cluster.identity_cache).",
			func(s jetstream.RouterStats) int64 { return s.Cached }),
		counter("cartera_identity_index_reads_total", "Events resolved by reading the cluster's identity index.",
			func(s jetstream.RouterStats) int64 { return s.Read }),
		counter("cartera_identity_index_links_total", "Identifiers this node linked to a profile in the identity index.",
			func(s jetstream.RouterStats) int64 { return s.Linked }),
		counter("cartera_identity_index_merges_total", "Merges of two profiles this node started through the log (MergeOut records).",
			func(s jetstream.RouterStats) int64 { return s.Merges }),
	)
}

// trimFunc trims an event log as its retention says at now, and says
// what it removed (nothing: "").
type trimFunc func(ctx context.Context, now time.Time) (removed string, err error)

// retain is the retention of the served log: applied records older than
// cfg.Retention, and the oldest applied ones while the log is over
// cfg.MaxBytes. In cluster mode (one node following the whole stream) the
// stream is trimmed below what the store applied, as the local log is.
func (l servedLog) retain(store *profiles.Store, cfg profiles.LogConfig) trimFunc {
	if l.cluster != nil {
		r := jetstream.Retention{Age: cfg.Retention, MaxBytes: cfg.MaxBytes}
		return func(ctx context.Context, now time.Time) (string, error) {
			n, err := l.cluster.Retain(ctx, store.AppliedOffset(), r, now)
			if n == 0 || err != nil {
				return "", err
			}
			return fmt.Sprintf("%d records of the stream", n), nil
		}
	}
	return func(_ context.Context, now time.Time) (string, error) {
		n, err := retain(l.local, store.AppliedOffset(), cfg, now)
		if n == 0 || err != nil {
			return "", err
		}
		return fmt.Sprintf("%d segments, %d bytes left", n, l.local.Bytes()), nil
	}
}

// retentionEvery is how often the event log is trimmed by its retention
// (on a cluster node: each partition's records below its snapshot).
const retentionEvery = time.Hour

// runRetention trims the event log every interval until ctx ends. What is
// not applied is never trimmed.
func runRetention(ctx context.Context, trim trimFunc, now func() time.Time, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if removed, err := trim(ctx, now()); err != nil {
			if ctx.Err() == nil {
				log.Error("trim the event log", "err", err)
			}
		} else if removed != "" {
			log.Info("event log trimmed", "removed", removed)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retain trims what the retention settings let go, below applied+1.
func retain(l *eventlog.Log, applied uint64, cfg profiles.LogConfig, now time.Time) (int, error) {
	segs := l.Segments()
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	below := uint64(0)
	for i, s := range segs[:len(segs)-1] {
		if s.Last > applied {
			break
		}
		old := cfg.Retention >= 0 && now.Sub(s.ModTime) > cfg.Retention
		if !old && total <= cfg.MaxBytes {
			break
		}
		total -= s.Bytes
		below = segs[i+1].First
	}
	if below == 0 {
		return 0, nil
	}
	n, err := l.Trim(below)
	if err != nil {
		return n, fmt.Errorf("trim below %d: %w", below, err)
	}
	return n, nil
}
