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
}

// DefaultConfig returns the settings used when the config file says nothing.
func DefaultConfig() Config {
	return Config{
		Identity:       DefaultIdentityConfig(),
		MaxEvents:      1000,
		DedupeWindow:   7 * 24 * time.Hour,
		MaxBatchEvents: 4000,
		MaxClockSkew:   DefaultMaxSkew,
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
	return c.Identity.Validate()
}
