package google

import (
	"time"

	"golang.org/x/time/rate"
)

// RateOf reports the limit and burst of c's request limiter.
func RateOf(c *Client) (rate.Limit, int) {
	c.init()
	return c.limiter.Limit(), c.limiter.Burst()
}

// SetSlowLimiter gives c a limiter of burst requests per hour, so a test
// can exhaust it without racing the refill.
func SetSlowLimiter(c *Client, burst int) {
	c.once.Do(func() {
		c.limiter = rate.NewLimiter(rate.Every(time.Hour), burst)
		c.notified = make(map[string][]time.Time)
	})
}
