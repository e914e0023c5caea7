package main

import (
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/rules"
)

// devClock is the clock of `serve` with dev_clock on: the wall clock plus
// an offset that POST /v1/admin/clock moves forward, so a demo or an
// end-to-end test can let a day pass in a second and watch the journeys'
// durable timers fire. Every engine reads it. It never goes back, and it
// is off unless the config or CARTERA_DEV_CLOCK turns it on. It may start
// at a chosen instant (CARTERA_DEV_CLOCK=2026-12-06T23:30:00+01:00), from
// which it runs at the wall clock's pace.
type devClock struct {
	wall func() time.Time
	// base is where the clock started against the wall clock.
	base time.Duration
	// offset is how far POST /v1/admin/clock moved it since.
	offset atomic.Int64
}

// newDevClock returns a dev clock reading wall, moved to start unless
// start is zero.
func newDevClock(start time.Time, wall func() time.Time) *devClock {
	c := &devClock{wall: wall}
	if !start.IsZero() {
		c.base = start.Sub(wall())
	}
	return c
}

// Now is the wall clock plus the offset.
func (c *devClock) Now() time.Time { return c.wall().Add(c.base + time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d and returns the new time.
func (c *devClock) Advance(d time.Duration) time.Time {
	c.offset.Add(int64(d))
	return c.Now()
}

// AtLeast moves the clock forward to offset (as Advance moved it) if it is
// behind it, and reports whether it moved: how a cluster node follows
// another's advance (node.go).
func (c *devClock) AtLeast(offset time.Duration) bool {
	for {
		cur := c.offset.Load()
		if int64(offset) <= cur {
			return false
		}
		if c.offset.CompareAndSwap(cur, int64(offset)) {
			return true
		}
	}
}

// maxClockStep bounds one advance, so a typo cannot age the data by years.
const maxClockStep = 90 * 24 * time.Hour

// clockInfo is the answer of the clock routes.
type clockInfo struct {
	Now    time.Time `json:"now"`
	Offset string    `json:"offset"`
}

func (a *api) clockInfo() clockInfo {
	return clockInfo{Now: a.clock.Now().UTC(), Offset: time.Duration(a.clock.offset.Load()).String()}
}

// getClock is GET /v1/admin/clock.
func (a *api) getClock(c *fiber.Ctx) error {
	if a.clock == nil {
		return &httpError{fiber.StatusNotFound, "dev clock is off: set dev_clock: true or CARTERA_DEV_CLOCK=1 (development only)"}
	}
	return c.JSON(a.clockInfo())
}

// advanceClock is POST /v1/admin/clock {"advance": "24h"}: time moves
// forward and due timers fire.
func (a *api) advanceClock(c *fiber.Ctx) error {
	if a.clock == nil {
		return a.getClock(c)
	}
	var req struct {
		Advance string `json:"advance"`
	}
	if err := decodeStrict(c.Body(), &req, `{"advance": "<duration>"}`); err != nil {
		return err
	}
	d, err := rules.ParseDuration(req.Advance)
	if err != nil || d <= 0 || d > maxClockStep {
		return &httpError{fiber.StatusBadRequest, "advance: want a duration such as 30m, 24h or 7d, at most 90d"}
	}
	a.clock.Advance(d)
	a.log.Warn("dev clock advanced", "by", d.String(), "now", a.clock.Now().UTC())
	if a.clockMoved != nil {
		if err := a.clockMoved(); err != nil {
			return err
		}
	}
	if a.core != nil {
		a.core.journeys.Wake()
		if a.core.delivery != nil {
			a.core.delivery.outbox.Wake()
		}
	}
	return c.JSON(a.clockInfo())
}
