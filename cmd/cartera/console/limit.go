package console

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimit bounds login attempts per client address and per user name,
// each a token bucket: burst attempts at once, then one per every.
type loginLimit struct {
	mu     sync.Mutex
	byAddr map[string]*rate.Limiter
	byUser map[string]*rate.Limiter
	every  time.Duration
	burst  int
}

// maxLimited bounds each map: past it the map is cleared (an attacker
// spraying addresses gets a fresh bucket sooner, never a lock-out of the
// server's memory).
const maxLimited = 50000

func newLoginLimit(burst int, every time.Duration) *loginLimit {
	return &loginLimit{byAddr: map[string]*rate.Limiter{}, byUser: map[string]*rate.Limiter{}, every: every, burst: burst}
}

func (l *loginLimit) bucket(m map[string]*rate.Limiter, key string) *rate.Limiter {
	b := m[key]
	if b == nil {
		if len(m) >= maxLimited {
			clear(m)
		}
		b = rate.NewLimiter(rate.Every(l.every), l.burst)
		m[key] = b
	}
	return b
}

// allow takes one attempt from the address's and the user name's buckets;
// false when either is empty. Both are charged, so a guesser cycling
// addresses still runs out on the name, and one cycling names runs out on
// the address.
func (l *loginLimit) allow(addr, user string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.bucket(l.byAddr, addr).AllowN(now, 1)
	u := l.bucket(l.byUser, user).AllowN(now, 1)
	return a && u
}
