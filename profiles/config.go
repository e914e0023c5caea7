package profiles

import (
	"fmt"
	"time"
)

// Config holds the settings of the profile store.
type Config struct {
	Identity IdentityConfig `yaml:"identity"`
	// MaxEvents is how many of the most recent events are kept per profile.
	MaxEvents int `yaml:"max_events"`
	// DedupeWindow is how long a messageId is remembered; a retry within
	// the window is accepted and not applied again.
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// MaxBatchEvents bounds how many events one group commit applies.
	MaxBatchEvents int `yaml:"max_batch_events"`
	// MaxClockSkew is how far in the future of its receipt an event's
	// (corrected) timestamp is believed; a later one is clamped to the
	// receipt time and kept as sent in originalTimestamp.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
	// NoSync turns off fsync. Only for benchmarks that measure everything
	// but the disk; a 200 then no longer means durable.
	NoSync bool `yaml:"-"`
	// Log bounds the event log that ingestion acknowledges on.
	Log LogConfig `yaml:"log"`
	// HotProfiles is how many decoded profiles the writer keeps in memory
	// between commits, the most recently written, so that a person's next
	// event does not decode their record again (0: none, the default: on
	// the machines measured it cost more CPU than the decoding it saved,
	// docs/benchmarks.md round 5).
	HotProfiles int `yaml:"hot_profiles"`
}

// LogConfig holds the settings of the event log (applier.go).
type LogConfig struct {
	// MaxLagEvents and MaxLag bound how far applying may fall behind
	// ingestion; past either, ingestion answers 503 with Retry-After and
	// appends nothing.
	MaxLagEvents int           `yaml:"max_lag_events"`
	MaxLag       time.Duration `yaml:"max_lag"`
	// RetryAfter is what a 503 for lag tells the client to wait.
	RetryAfter time.Duration `yaml:"retry_after"`
	// MaxApplyTries is how often one event is tried before it is
	// recorded as dead and skipped.
	MaxApplyTries int `yaml:"max_apply_tries"`
	// Retention is how long applied events stay in the log, and MaxBytes
	// the size the log is trimmed to (oldest applied segments first);
	// nothing not applied is ever trimmed.
	Retention time.Duration `yaml:"retention"`
	MaxBytes  int64         `yaml:"max_bytes"`
	// SegmentBytes is the size of one segment file.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// Dir is the event log's folder; empty, beside the data file
	// (<data>.log). On a device of its own, the log's fsync (every
	// acknowledgement) does not queue behind the bbolt file's writes, as
	// etcd's --wal-dir.
	Dir string `yaml:"dir"`
}

// DefaultLogConfig returns the event log's settings when the config says
// nothing.
func DefaultLogConfig() LogConfig {
	return LogConfig{
		MaxLagEvents:  1_000_000,
		MaxLag:        30 * time.Second,
		RetryAfter:    2 * time.Second,
		MaxApplyTries: 5,
		Retention:     7 * 24 * time.Hour,
		MaxBytes:      16 << 30,
		SegmentBytes:  64 << 20,
	}
}

// Validate reports the first invalid setting, naming it.
func (c LogConfig) Validate() error {
	switch {
	case c.MaxLagEvents < 1:
		return fmt.Errorf("profiles.log.max_lag_events: want at least 1, got %d", c.MaxLagEvents)
	case c.MaxLag < 100*time.Millisecond:
		return fmt.Errorf("profiles.log.max_lag: want at least 100ms, got %s", c.MaxLag)
	case c.RetryAfter < time.Second:
		return fmt.Errorf("profiles.log.retry_after: want at least 1s, got %s", c.RetryAfter)
	case c.MaxApplyTries < 1:
		return fmt.Errorf("profiles.log.max_apply_tries: want at least 1, got %d", c.MaxApplyTries)
	case c.Retention < 0:
		return fmt.Errorf("profiles.log.retention: want 0 or more, got %s", c.Retention)
	case c.MaxBytes < 1<<20:
		return fmt.Errorf("profiles.log.max_bytes: want at least 1 MiB, got %d", c.MaxBytes)
	case c.SegmentBytes < 4096:
		return fmt.Errorf("profiles.log.segment_bytes: want at least 4096, got %d", c.SegmentBytes)
	}
	return nil
}

// DefaultConfig returns the settings used when the config file says nothing.
func DefaultConfig() Config {
	return Config{
		Identity:       DefaultIdentityConfig(),
		MaxEvents:      1000,
		DedupeWindow:   7 * 24 * time.Hour,
		MaxBatchEvents: 4000,
		MaxClockSkew:   DefaultMaxSkew,
		Log:            DefaultLogConfig(),
	}
}

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	if c.MaxEvents < 1 {
		return fmt.Errorf("profiles.max_events: want at least 1, got %d", c.MaxEvents)
	}
	if c.DedupeWindow < time.Minute {
		return fmt.Errorf("profiles.dedupe_window: want at least 1m, got %s", c.DedupeWindow)
	}
	if c.MaxBatchEvents < 1 {
		return fmt.Errorf("profiles.max_batch_events: want at least 1, got %d", c.MaxBatchEvents)
	}
	if c.MaxClockSkew < time.Minute {
		return fmt.Errorf("profiles.max_clock_skew: want at least 1m, got %s", c.MaxClockSkew)
	}
	if c.HotProfiles < 0 || c.HotProfiles > 10_000_000 {
		return fmt.Errorf("profiles.hot_profiles: want 0 (none) to 10000000, got %d", c.HotProfiles)
	}
	if err := c.Log.Validate(); err != nil {
		return err
	}
	return c.Identity.Validate()
}
