package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// through the log. Only for a new store and stream: an index is not
	// seeded from a store that already holds people.
	IdentityIndex bool `yaml:"identity_index"`
	// IdentitySecret keys the hash of the identifiers in the index
	// (CARTERA_CLUSTER_IDENTITY_SECRET; at least 16 bytes), so that who
	// can read the bucket cannot test an email against it. Every node
	// needs the same one.
	IdentitySecret string `yaml:"identity_secret"`
	// IdentityCache is how long an identifier read from the index is
	// trusted without reading it again (0: always read).
	IdentityCache time.Duration `yaml:"identity_cache"`
}

// DefaultClusterConfig is off (no URL), with the stream defaults of
// jetstream.DefaultConfig.
func DefaultClusterConfig() ClusterConfig {
	d := jetstream.DefaultConfig()
	return ClusterConfig{Stream: d.Stream, Subject: d.Subject, Partitions: d.Partitions, Replicas: d.Replicas, AckWait: d.AckWait, IdentityCache: time.Minute}
}

func (c ClusterConfig) jetstream() jetstream.Config {
	return jetstream.Config{URL: c.URL, Stream: c.Stream, Subject: c.Subject, Partitions: c.Partitions, Replicas: c.Replicas, AckWait: c.AckWait}
}

// Validate checks the settings when cluster mode is on.
func (c ClusterConfig) Validate() error {
	if c.URL == "" {
		if c.IdentityIndex {
			return errors.New("cluster.identity_index: set cluster.url too")
		}
		return nil
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
		if router, err = openIdentityIndex(ctx, cfg, l, store, trust); err != nil {
			_ = l.Close()
			return clusterLog{}, err
		}
		attach = router
	}
	if err := store.AttachLog(attach); err != nil {
		_ = l.Close()
		return clusterLog{}, fmt.Errorf("cluster: stream %s: %w", cfg.Cluster.Stream, err)
	}
	return clusterLog{log: l, router: router}, nil
}

// openIdentityIndex opens the cluster's identity index in front of l. It
// refuses a store that holds people while the index knows nobody: they
// would each get a second profile (seeding the index is not built).
func openIdentityIndex(ctx context.Context, cfg *Config, l *jetstream.Log, store *profiles.Store, trust profiles.SourceTrust) (*jetstream.Router, error) {
	c := cfg.Cluster
	rcfg := jetstream.RouterConfig{Identity: cfg.Profiles.Identity, CacheTTL: c.IdentityCache, Trust: trust}
	if c.IdentitySecret != "" {
		rcfg.Secret = []byte(c.IdentitySecret)
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := jetstream.NewRouter(openCtx, l, rcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster.identity_index: %w", err)
	}
	empty, err := r.Empty(openCtx)
	if err != nil {
		return nil, fmt.Errorf("cluster.identity_index: %w", err)
	}
	if n := store.ProfileCount(); n > 0 && empty {
		return nil, fmt.Errorf("cluster.identity_index: the store holds %d profiles and the identity index none: turn the index on with a new store and stream (seeding it from a store is not built)", n)
	}
	return r, nil
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
