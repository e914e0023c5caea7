// Package ratelimit keeps one token bucket per key (a write key, a client
// address, a device, a user name) in bounded memory, for the gateway's
// edge limits and the console's login limit.
//
//	s := ratelimit.New(10, 20) // 10 a second, bursts of 20, per key
//	if !s.Allow(addr, time.Now()) { /* 429 */ }
package ratelimit

import (
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxKeys bounds the buckets one Set keeps; past it, full buckets are
// forgotten first (forgetting them changes nothing), then any half.
const MaxKeys = 100_000

// Set holds one token bucket per key. A nil Set is a limit that is off:
// Get returns nil and Allow true.
type Set struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

// New returns a Set of buckets of perSecond tokens a second and burst at
// once, or nil (off) when perSecond is not positive.
func New(perSecond float64, burst int) *Set {
	if perSecond <= 0 {
		return nil
	}
	return &Set{limit: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// Get returns key's bucket (nil when the Set is off). A key is copied
// (or hashed, when long) before it is kept, so a caller may pass a string
// whose bytes are reused, as Fiber's are.
func (s *Set) Get(key string, now time.Time) *rate.Limiter {
	if s == nil {
		return nil
	}
	if len(key) > 64 {
		sum := sha256.Sum256([]byte(key))
		key = string(sum[:16])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim, ok := s.m[key]; ok {
		return lim
	}
	if len(s.m) >= MaxKeys {
		s.evict(now)
	}
	lim := rate.NewLimiter(s.limit, s.burst)
	s.m[string([]byte(key))] = lim
	return lim
}

// Allow takes one token of key's bucket; true when the Set is off.
func (s *Set) Allow(key string, now time.Time) bool {
	lim := s.Get(key, now)
	return lim == nil || lim.AllowN(now, 1)
}

func (s *Set) evict(now time.Time) {
	for k, lim := range s.m {
		if lim.TokensAt(now) >= float64(s.burst) {
			delete(s.m, k)
		}
	}
	for k := range s.m { // still full: a flood of keys; forget any half
		if len(s.m) < MaxKeys/2 {
			break
		}
		delete(s.m, k)
	}
}
