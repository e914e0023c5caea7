package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Message is one delivery to make: a send of a journey step, an ad
// audience add or remove, a webhook call. It is stored in the outbox until
// delivered, moved to the dead letters after too many tries.
type Message struct {
	// Seq is the message's place in the outbox (set by Enqueue).
	Seq uint64 `json:"seq"`
	// Key is the idempotency key: (journey, version, instance, step) for
	// a step's send, (audience, profile, operation, time) for an ad
	// audience change. A key is enqueued once.
	Key string `json:"key"`
	// Destination names who delivers it: "email", "sms", "webhook",
	// "meta:<audience>", "google:<audience>", "audience_webhook:<audience>".
	Destination string `json:"destination"`
	ProfileID   string `json:"profile_id"`
	Journey     string `json:"journey,omitempty"`
	Step        string `json:"step,omitempty"`
	// Payload is destination-specific JSON (see each destination).
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	Attempts  int             `json:"attempts"`
	NextAt    time.Time       `json:"next_at"`
	LastError string          `json:"last_error,omitempty"`
	// DeadAt is when the message moved to the dead letters (zero while
	// queued, and in dead letters of earlier versions).
	DeadAt time.Time `json:"dead_at,omitzero"`
	// Scrub marks a message that carries the personal data of an erased
	// person (its removal from the ad audiences): once it leaves the
	// outbox, the file's free pages are scrubbed (OutboxOptions.Scrub) so
	// that the erasure leaves no trace of it.
	Scrub bool `json:"scrub,omitempty"`
}

// SendPayload is the payload of a journey's send (email, sms, push, webhook).
type SendPayload struct {
	Template string         `json:"template"`
	Data     map[string]any `json:"data,omitempty"`
}

// AudiencePayload is the payload of an ad audience change.
type AudiencePayload struct {
	Audience string `json:"audience"`
	// Op is "add" or "remove".
	Op string `json:"op"`
	// Identifiers are the person's raw email addresses and phone numbers
	// (E.164) at the time of the change; destinations hash them as their
	// platform specifies. Kept raw in our own file only, never logged.
	Emails []string `json:"emails,omitempty"`
	Phones []string `json:"phones,omitempty"`
}

// Destination delivers the messages of one destination. Deliver gets a
// batch (one message unless the destination's config batches) and returns
// one Result per message, in order.
type Destination interface {
	Name() string
	Deliver(ctx context.Context, msgs []*Message) []Result
}

// Result is the outcome of one message.
type Result struct {
	// Err is nil when delivered. A *PermanentError is not retried.
	Err error
	// Events are outcomes to record on the person's profile
	// ("Email Delivered", "Email Bounced", "Audience Synced").
	Events []Outcome
}

// Outcome is an event to record on a profile after a delivery.
type Outcome struct {
	Event      string
	Properties map[string]any
	// Consent, when not nil, is recorded as consent changes (a hard
	// bounce withdraws email).
	Consent map[string]bool
}

// PermanentError is a failure that retrying cannot fix (a hard bounce, a
// 4xx refusal): the message goes to the dead letters at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err is permanent.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// Profile is what a destination may know of the person: resolved at
// delivery time, so a consent withdrawn since the step still holds the
// message back.
type Profile struct {
	ID      string
	Emails  []string
	Phones  []string
	Traits  map[string]any
	Consent map[string]bool
	// Locale is traits.locale or context.locale ("es", "en-GB"), or "".
	Locale string
}

// Profiles looks people up for destinations (cmd/cartera wires the profile
// store in).
type Profiles interface {
	Profile(ctx context.Context, id string) (*Profile, error)
}

// ErrNoConsent holds a message back for want of consent: it is dropped
// (not retried) and recorded as suppressed.
var ErrNoConsent = errors.New("no consent")

// DestinationConfig tunes delivery to one destination.
type DestinationConfig struct {
	// Concurrency is how many batches are in flight at once.
	Concurrency int `yaml:"concurrency"`
	// BatchSize is the most messages one Deliver call gets.
	BatchSize int `yaml:"batch_size"`
	// BatchWindow waits after the first due message for more to batch
	// (ad audiences: 1s), so a burst of removals is one API call.
	BatchWindow time.Duration `yaml:"batch_window"`
	// MaxAttempts before the dead letters.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the first retry delay; each retry doubles it, up to
	// MaxBackoff, with full jitter.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// BreakAfter consecutive failures open the circuit for BreakFor.
	BreakAfter int           `yaml:"break_after"`
	BreakFor   time.Duration `yaml:"break_for"`
	// Rate is the most Deliver calls a second (a platform's API quota;
	// 0: no bound). On a cluster node the bound is the node's share,
	// by the partitions it holds, and its partitions' outboxes share it.
	Rate float64 `yaml:"rate"`
}

// DefaultDestinationConfig: 4 in flight, one at a time, 8 tries from 1s to
// 5m, circuit open for 30s after 5 failures in a row.
func DefaultDestinationConfig() DestinationConfig {
	return DestinationConfig{Concurrency: 4, BatchSize: 1, MaxAttempts: 8, Backoff: time.Second, MaxBackoff: 5 * time.Minute, BreakAfter: 5, BreakFor: 30 * time.Second}
}

// Validate names the first bad setting.
func (c DestinationConfig) Validate(field string) error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("%s.concurrency: want at least 1", field)
	case c.BatchSize < 1:
		return fmt.Errorf("%s.batch_size: want at least 1", field)
	case c.MaxAttempts < 1:
		return fmt.Errorf("%s.max_attempts: want at least 1", field)
	case c.Backoff <= 0 || c.MaxBackoff < c.Backoff:
		return fmt.Errorf("%s.backoff: want 0 < backoff <= max_backoff", field)
	case c.BreakAfter < 1 || c.BreakFor <= 0:
		return fmt.Errorf("%s.break_after/break_for: want positive values", field)
	case c.Rate < 0:
		return fmt.Errorf("%s.rate: want 0 (no bound) or more calls a second, got %g", field, c.Rate)
	}
	return nil
}
