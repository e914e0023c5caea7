package console

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration prints d as a person would, in the units of the config files:
// 24h, 30m, 1h30m, 45s, 7d (whole days from two on), 1.5s; Go's own
// format reads 24h0m0s.
func Duration(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	if d < time.Second || d%time.Second != 0 && d < time.Minute {
		return d.String()
	}
	if d >= 48*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			d -= n * u.unit
		}
	}
	// Below a minute any fraction was printed above; here, what is left
	// of a longer duration is under a second, and is dropped.
	return b.String()
}

// goDuration matches Go's duration format where it has more than one
// unit ("24h0m0s", "1h30m0s", "30m0s"), as engine reasons carry it.
var goDuration = regexp.MustCompile(`\b(?:\d+h)?\d+m\d+(?:\.\d+)?s\b`)

// humanDurations rewrites the Go durations in a text as Duration prints
// them: "1 email per 24h0m0s" → "1 email per 24h".
func humanDurations(s string) string {
	return goDuration.ReplaceAllStringFunc(s, func(m string) string {
		d, err := time.ParseDuration(m)
		if err != nil {
			return m
		}
		return Duration(d)
	})
}
