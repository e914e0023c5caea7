package console

import (
	"time"

	"golang.org/x/time/rate"

	"cartera/internal/ratelimit"
)

// loginLimit bounds login attempts per client address and per user name,
// each a token bucket: burst attempts at once, then one per every.
type loginLimit struct {
	byAddr, byUser *ratelimit.Set
}

func newLoginLimit(burst int, every time.Duration) *loginLimit {
	r := float64(rate.Every(every))
	return &loginLimit{byAddr: ratelimit.New(r, burst), byUser: ratelimit.New(r, burst)}
}

// allow takes one attempt from the address's and the user name's buckets;
// false when either is empty. Both are charged, so a guesser cycling
// addresses still runs out on the name, and one cycling names runs out on
// the address.
func (l *loginLimit) allow(addr, user string, now time.Time) bool {
	a := l.byAddr.Allow(addr, now)
	u := l.byUser.Allow(user, now)
	return a && u
}
