package main

import (
	"context"
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
}

// DefaultClusterConfig is off (no URL), with the stream defaults of
// jetstream.DefaultConfig.
func DefaultClusterConfig() ClusterConfig {
	d := jetstream.DefaultConfig()
	return ClusterConfig{Stream: d.Stream, Subject: d.Subject, Partitions: d.Partitions, Replicas: d.Replicas, AckWait: d.AckWait}
}

func (c ClusterConfig) jetstream() jetstream.Config {
	return jetstream.Config{URL: c.URL, Stream: c.Stream, Subject: c.Subject, Partitions: c.Partitions, Replicas: c.Replicas, AckWait: c.AckWait}
}

// Validate checks the settings when cluster mode is on.
func (c ClusterConfig) Validate() error {
	if c.URL == "" {
		return nil
	}
	return c.jetstream().Validate()
}

// openClusterLog opens the JetStream event log and makes ingestion
// acknowledge on it. A stream it creates starts after the last offset the
// store applied, as the local log does.
func openClusterLog(ctx context.Context, cfg *Config, store *profiles.Store, log *slog.Logger) (*jetstream.Log, error) {
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
	if err := store.AttachLog(l); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("cluster: stream %s: %w", jcfg.Stream, err)
	}
	return l, nil
}
