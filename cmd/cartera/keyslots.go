package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// keySlotWait bounds how long an ingestion request waits for a slot of
// its write key before it is refused (429, as a rate limit).
const keySlotWait = 5 * time.Second

// keySlots bounds the ingestion requests of one write key that are
// decoded and appended at once; the others wait their turn, parked, with
// no CPU. A key sending many batches at once (a flood, or a backfill)
// then has at most that many handlers running, and the other keys'
// requests do not queue for a CPU behind the rest (docs/benchmarks.md,
// round 9: the slowest single events of another key came when 12 to 18
// of one key's batches landed at once). Off by default: on two shared
// cores it did not measurably move the other key's tail.
type keySlots struct {
	max int
	// waited counts requests that found every slot of their key taken.
	waited prometheus.Counter

	mu   sync.Mutex
	keys map[string]*keySlot
}

// keySlot is one key's slots: a token in ch for each request holding one;
// users counts holders and waiters, so the slot is dropped with its last.
type keySlot struct {
	ch    chan struct{}
	users int
}

// newKeySlots returns nil (no cap) when max is 0, and registers
// cartera_ingest_key_waits_total on reg (nil: not registered).
func newKeySlots(max int, reg prometheus.Registerer) *keySlots {
	if max <= 0 {
		return nil
	}
	s := &keySlots{
		max:  max,
		keys: map[string]*keySlot{},
		waited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cartera_ingest_key_waits_total",
			Help: "Ingestion requests that waited for their write key's other requests to finish (limits.write_key_concurrency).",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.waited)
	}
	return s
}

// acquire takes a slot of key, waiting up to wait for one. It returns
// the release, or false when none came free in time. A nil keySlots has
// no cap.
func (s *keySlots) acquire(key string, wait time.Duration) (release func(), ok bool) {
	if s == nil {
		return func() {}, true
	}
	s.mu.Lock()
	k := s.keys[key]
	if k == nil {
		k = &keySlot{ch: make(chan struct{}, s.max)}
		s.keys[key] = k
	}
	k.users++
	s.mu.Unlock()
	release = func() {
		<-k.ch
		s.drop(key, k)
	}
	select {
	case k.ch <- struct{}{}:
		return release, true
	default:
	}
	s.waited.Inc()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case k.ch <- struct{}{}:
		return release, true
	case <-t.C:
		s.drop(key, k)
		return nil, false
	}
}

// drop forgets a user of k, and k with its last.
func (s *keySlots) drop(key string, k *keySlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k.users--
	if k.users == 0 {
		delete(s.keys, key)
	}
}

// running is how many requests of key hold a slot (tests).
func (s *keySlots) running(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[key]; k != nil {
		return len(k.ch)
	}
	return 0
}
