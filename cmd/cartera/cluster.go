package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cartera/profiles"
	"cartera/profiles/jetstream"
)

// ClusterConfig puts the event log on a NATS JetStream stream instead of
// the local disk (cluster mode, first step: one node applies every
// partition). Empty URL: the local log.
type ClusterConfig struct {
	// URL is the NATS server(s) (CARTERA_CLUSTER_URL, --cluster).
	URL string `yaml:"url"`
	// Stream is the JetStream stream's name.
	Stream string `yaml:"stream"`
	// Subject is the prefix of the stream's subjects, <subject>.<partition>.
	Subject string `yaml:"subject"`
	// Partitions is fixed when the stream is created.
	Partitions int `yaml:"partitions"`
	// Replicas is the stream's replication when it is created: 3 in
	// production, 1 on a single NATS server.
	Replicas int `yaml:"replicas"`
	// AckWait bounds the wait for JetStream's acknowledgement of an append.
	AckWait time.Duration `yaml:"ack_wait"`
	// IdentityIndex resolves each event's identifiers in the cluster's
	// identity index (a JetStream KV bucket) before it is appended, so
	// that its partition is its profile's; merges between profiles go
	// through the log. Turned on for a store that already holds people,
	// serve seeds the index from the store at start, before it listens
	// (resuming a seed that a crash stopped).
	IdentityIndex bool `yaml:"identity_index"`
	// IdentitySecret keys the hash of the identifiers in the index
	// (CARTERA_CLUSTER_IDENTITY_SECRET; at least 16 bytes), so that who
	// can read the bucket cannot test an email against it. Every node
	// needs the same one.
	IdentitySecret string `yaml:"identity_secret"`
	// IdentityCache is how long an identifier read from the index is
	// trusted without reading it again (0: always read).
	IdentityCache time.Duration `yaml:"identity_cache"`
	// Node makes this gateway one of several nodes of the cluster
	// (CARTERA_CLUSTER_NODE): it holds the partitions the leases give it,
	// each with the core of serve on a file of its own, instead of one
	// store applying the whole stream (node.go). Unique and stable across
	// the node's restarts. Needs identity_index.
	Node string `yaml:"node"`
	// LeaseTTL is how long a node's lease of a partition lasts without
	// renewal: how long a dead node's partitions wait for a new owner.
	// Every node must use the same.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// SnapshotEvents and SnapshotInterval say when a node snapshots a
	// partition it holds to the Object Store (whichever first), bounding
	// what a new owner replays after the node dies.
	SnapshotEvents   int           `yaml:"snapshot_events"`
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
}

// DefaultClusterConfig is off (no URL), with the stream defaults of
// jetstream.DefaultConfig.
func DefaultClusterConfig() ClusterConfig {
	d := jetstream.DefaultConfig()
	return ClusterConfig{Stream: d.Stream, Subject: d.Subject, Partitions: d.Partitions, Replicas: d.Replicas, AckWait: d.AckWait, IdentityCache: time.Minute,
		LeaseTTL: 10 * time.Second, SnapshotEvents: 50_000, SnapshotInterval: 5 * time.Minute}
}

// node is this node's config in the cluster: its leases, its snapshots
// (written under snapDir before their upload) and its trims of the stream
// below them, hourly, by the log's retention.
func (c ClusterConfig) node(retention profiles.LogConfig, snapDir string, log *slog.Logger) jetstream.NodeConfig {
	return jetstream.NodeConfig{
		ID: c.Node, LeaseTTL: c.LeaseTTL, Logger: log,
		Snapshots: jetstream.SnapshotConfig{Events: c.SnapshotEvents, Interval: c.SnapshotInterval, Dir: snapDir},
		Trim:      jetstream.TrimConfig{Every: retentionEvery, Retention: jetstream.Retention{Age: retention.Retention, MaxBytes: retention.MaxBytes}},
	}
}

func (c ClusterConfig) jetstream() jetstream.Config {
	return jetstream.Config{URL: c.URL, Stream: c.Stream, Subject: c.Subject, Partitions: c.Partitions, Replicas: c.Replicas, AckWait: c.AckWait}
}

// Validate checks the settings when cluster mode is on.
func (c ClusterConfig) Validate() error {
	if c.URL == "" {
		switch {
		case c.IdentityIndex:
			return errors.New("cluster.identity_index: set cluster.url too")
		case c.Node != "":
			return errors.New("cluster.node: set cluster.url too")
		}
		return nil
	}
	if c.Node != "" {
		if !c.IdentityIndex {
			return errors.New("cluster.node: set cluster.identity_index too (a node's partitions are keyed by profile)")
		}
		if err := c.node(profiles.DefaultConfig().Log, "", nil).Validate(); err != nil {
			return err
		}
	}
	switch {
	case c.IdentitySecret != "" && !c.IdentityIndex:
		return errors.New("cluster.identity_secret: set cluster.identity_index too")
	case c.IdentitySecret != "" && len(c.IdentitySecret) < 16:
		return fmt.Errorf("cluster.identity_secret: want at least 16 bytes, got %d", len(c.IdentitySecret))
	case c.IdentityCache < 0:
		return fmt.Errorf("cluster.identity_cache: want 0 (always read the index) or more, got %s", c.IdentityCache)
	}
	return c.jetstream().Validate()
}

// clusterLog is the JetStream log serve acknowledges on, and the identity
// index in front of it (nil: events resolved by the store).
type clusterLog struct {
	log    *jetstream.Log
	router *jetstream.Router
}

// openClusterLog opens the JetStream event log and makes ingestion
// acknowledge on it, through the identity index when the config says so.
// A stream it creates starts after the last offset the store applied, as
// the local log does.
func openClusterLog(ctx context.Context, cfg *Config, store *profiles.Store, trust profiles.SourceTrust, log *slog.Logger) (clusterLog, error) {
	l, err := openJetStream(ctx, cfg, store, log)
	if err != nil {
		return clusterLog{}, err
	}
	var attach profiles.EventLog = l
	var router *jetstream.Router
	if cfg.Cluster.IdentityIndex {
		if router, err = openIdentityIndex(ctx, cfg, l, trust); err != nil {
			_ = l.Close()
			return clusterLog{}, err
		}
		attach = router
	}
	if err := store.AttachLog(attach); err != nil {
		_ = l.Close()
		return clusterLog{}, fmt.Errorf("cluster: stream %s: %w", cfg.Cluster.Stream, err)
	}
	if router != nil {
		if err := seedIdentityIndex(ctx, router, store, log); err != nil {
			_ = l.Close()
			return clusterLog{}, err
		}
	}
	return clusterLog{log: l, router: router}, nil
}

// openIdentityIndex opens the cluster's identity index in front of l.
func openIdentityIndex(ctx context.Context, cfg *Config, l *jetstream.Log, trust profiles.SourceTrust) (*jetstream.Router, error) {
	return openIdentityIndexAdmitting(ctx, cfg, l, trust, nil)
}

// openIdentityIndexAdmitting is openIdentityIndex whose router asks admit
// before it appends a batch (jetstream.RouterConfig.Admit).
func openIdentityIndexAdmitting(ctx context.Context, cfg *Config, l *jetstream.Log, trust profiles.SourceTrust, admit func([]int) error) (*jetstream.Router, error) {
	c := cfg.Cluster
	rcfg := jetstream.RouterConfig{Identity: cfg.Profiles.Identity, CacheTTL: c.IdentityCache, Trust: trust, Admit: admit}
	if c.IdentitySecret != "" {
		rcfg.Secret = []byte(c.IdentitySecret)
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := jetstream.NewRouter(openCtx, l, rcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster.identity_index: %w", err)
	}
	return r, nil
}

// seedIdentityIndex fills the identity index from the store when the
// index knows nobody (or a seed did not finish: jetstream.Router.Empty)
// and the store holds people, who would otherwise each get a second
// profile. It runs before serve applies or routes anything: it first
// applies what the stream holds beyond the store (events acknowledged
// before the restart, appended without the index), so that the seed sees
// every identifier they link; then it seeds. A crash or a stop during the
// seed leaves the index empty to the next start, which goes on from the
// last batch recorded. An index that holds other people than the store's
// is refused.
func seedIdentityIndex(ctx context.Context, r *jetstream.Router, store *profiles.Store, log *slog.Logger) error {
	empty, err := r.Empty(ctx)
	if err != nil {
		return fmt.Errorf("cluster.identity_index: %w", err)
	}
	if !empty || store.ProfileCount() == 0 {
		return nil
	}
	if err := applyBacklog(ctx, store, log); err != nil {
		return fmt.Errorf("cluster.identity_index: apply the stream before seeding the index: %w", err)
	}
	total := store.ProfileCount()
	log.Info("identity index: seeding it from the store", "profiles", total)
	next := int64(seedLogEvery)
	stats, err := r.Seed(ctx, store, func(s jetstream.SeedStats) {
		if s.Profiles >= next {
			log.Info("identity index: seeding", "profiles_done", s.Profiles, "profiles", total, "identifiers_linked", s.Linked, "identifiers_known", s.Known)
			next = s.Profiles + seedLogEvery
		}
	})
	var conflict *jetstream.SeedConflictError
	switch {
	case errors.As(err, &conflict):
		return fmt.Errorf("cluster.identity_index: the store holds %d profiles and the identity index other people: %w; turn the index on with a stream of this store's", total, err)
	case err != nil:
		return fmt.Errorf("cluster.identity_index: %w", err)
	}
	log.Info("identity index: seeded from the store", "profiles", stats.Profiles, "identifiers_linked", stats.Linked, "identifiers_known", stats.Known,
		"protected", stats.Protected, "resumed", stats.From != "")
	return nil
}

// seedLogEvery is how many profiles seeding the identity index logs its
// progress after.
const seedLogEvery = 50_000

// applyBacklog applies what the event log holds beyond what the store
// applied, and returns once the store has applied it, and the records
// applying it appended in turn (a merge's steps, forwarded events).
func applyBacklog(ctx context.Context, store *profiles.Store, log *slog.Logger) error {
	target, applied := store.LogCommitted(), store.AppliedOffset()
	if applied >= target {
		return nil
	}
	log.Info("identity index: applying the stream's events the store has not, before seeding", "events", target-applied)
	applyCtx, stop := context.WithCancel(ctx)
	var applying sync.WaitGroup
	applying.Go(func() { store.RunApplier(applyCtx) })
	defer func() {
		stop()
		applying.Wait()
	}()
	for ; store.AppliedOffset() < target; target = store.LogCommitted() {
		if err := store.WaitApplied(ctx, target); err != nil {
			return err
		}
	}
	return nil
}

func openJetStream(ctx context.Context, cfg *Config, store *profiles.Store, log *slog.Logger) (*jetstream.Log, error) {
	jcfg := cfg.Cluster.jetstream()
	jcfg.FirstOffset = store.AppliedOffset() + 1
	jcfg.Logger = log.With("component", "jetstream")
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := jetstream.Open(openCtx, jcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	first, err := l.FirstOffset(openCtx)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if applied := store.AppliedOffset(); applied+1 < first && l.Committed() >= first {
		_ = l.Close()
		return nil, fmt.Errorf("cluster: stream %s starts at offset %d but the store applied only up to %d: the events between were purged", jcfg.Stream, first, applied)
	}
	return l, nil
}
