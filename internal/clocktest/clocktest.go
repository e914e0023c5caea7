// Package clocktest is the clock tests inject into the store, the engines
// and the wallet: it moves only when the test moves it, and is safe for
// concurrent use.
//
//	clock := clocktest.New(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
//	st, err := profiles.Open(ctx, path, cfg, profiles.Options{Now: clock.Now})
//	clock.Advance(24 * time.Hour)
package clocktest

import (
	"sync"
	"time"
)

// Clock is a settable clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock set at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
