package clocktest

import (
	"fmt"
	"os"
	"time"
)

// StartEnv names the variable that sets the instant tests that run the
// gateway on a moving clock start at; `make test-clock` runs the suite at
// several (night in Madrid, a Sunday, 29 February, a skipped DST hour).
const StartEnv = "CARTERA_TEST_CLOCK"

// Start is the instant a test that runs `serve` on a moving clock starts
// it at: CARTERA_TEST_CLOCK when set, else the wall clock. Such tests pass
// it to the gateway as CARTERA_DEV_CLOCK (see DevClockEnv) and must pass
// whatever it is.
func Start() (time.Time, error) {
	v := os.Getenv(StartEnv)
	if v == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: want an RFC 3339 instant such as 2026-12-06T23:30:00+01:00, got %q", StartEnv, v)
	}
	return t, nil
}

// Running is a clock that starts at an instant and then runs at the wall
// clock's pace, as serve's dev clock does: a test holds one beside the
// gateway it started, to know the gateway's time.
type Running struct {
	start time.Time
	wall  time.Time
}

// NewRunning returns a running clock at start now.
func NewRunning(start time.Time) *Running { return &Running{start: start, wall: time.Now()} }

// Now is the start plus the wall time passed since.
func (r *Running) Now() time.Time { return r.start.Add(time.Since(r.wall)) }

// Start is the instant the clock started at.
func (r *Running) Start() time.Time { return r.start }

// DevClockEnv is the value of CARTERA_DEV_CLOCK that starts serve's clock
// where this one is now.
func (r *Running) DevClockEnv() string { return r.Now().Format(time.RFC3339Nano) }

// NoonZone returns the name of a fixed-offset IANA zone (Etc/GMT±N) in
// which t falls between 12:00 and 13:00: a test gives a person this
// `timezone` trait when what it checks is not the quiet hours, so that a
// send goes out whatever hour the suite runs at.
func NoonZone(t time.Time) string {
	off := 12 - t.UTC().Hour() // -11 … +12 hours east of UTC
	switch {
	case off > 0:
		return fmt.Sprintf("Etc/GMT-%d", off) // POSIX signs: GMT-5 is UTC+5
	case off < 0:
		return fmt.Sprintf("Etc/GMT+%d", -off)
	}
	return "Etc/UTC"
}
