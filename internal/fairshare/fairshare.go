// Package fairshare says which clients take more than their share of a
// resource that is running short: it keeps, per key (a write key), the
// events sent recently, decayed with a half-life, and compares each key's
// share of them with an even split among the keys that send. A refused
// request counts too (as the key's usual batch), so that a key refused
// stays the heaviest while it goes on sending, and the others' shares do
// not grow because it is refused. It
// also samples how long the process's goroutines wait for a CPU, one of
// the signals that the resource is short.
//
// It decides nothing about when to refuse: the gateway asks Over only
// while it is under load (its apply lag or the CPU), so that a key sending
// more than the others is refused only when that hurts them.
//
// A key over its share is paced rather than refused outright (Pace): one
// request of its usual batch per slot, so that it comes in evenly.
//
//	s := fairshare.New(2*time.Second, 1.5, 500)
//	if v := s.Over(key, now); underLoad && v.Over {
//		if wait, ok := s.Pace(key, v, now, time.Second); ok { /* hold wait, let in */ } else { /* 429 */ }
//	}
//	s.Add(key, accepted, now) // or s.Refused(key, now)
package fairshare

import (
	"math"
	"sync"
	"time"
)

// MaxKeys bounds the keys a Shares keeps; past it, keys whose count has
// decayed to nothing are forgotten, then any half.
const MaxKeys = 10_000

// active is the decayed count from which a key counts as sending: about
// one event within the last half-life.
const active = 0.5

// Shares keeps the events each key sent recently.
type Shares struct {
	halfLife time.Duration
	margin   float64
	minRate  float64

	mu    sync.Mutex
	keys  map[string]*sender
	total decayed
	// accepted counts the events accepted, without the refused: the
	// rate the over keys are paced from.
	accepted decayed
	// sending is the keys counted as sending, as of countedAt (zero:
	// count again): counted at most every half-life/16, not per call.
	sending   int
	countedAt time.Time
}

// sender is one key's count, and the events its accepted requests
// brought, on average (what a refused one is counted as).
type sender struct {
	decayed
	perRequest float64
	// next is when the key's next paced request may go (Pace).
	next time.Time
}

// decayed is a count that halves every half-life, as of at.
type decayed struct {
	n  float64
	at time.Time
}

func (d *decayed) value(now time.Time, halfLife time.Duration) float64 {
	if d.n == 0 || !now.After(d.at) {
		return d.n
	}
	return d.n * math.Exp2(-float64(now.Sub(d.at))/float64(halfLife))
}

func (d *decayed) add(n float64, now time.Time, halfLife time.Duration) {
	if now.Before(d.at) {
		now = d.at // a clock that steps back adds at the last instant
	}
	d.n = d.value(now, halfLife) + n
	d.at = now
}

// New returns Shares whose counts halve every halfLife, and which call a
// key over its share past margin times an even split (margin at least 1)
// when it also sends minRate events a second or more: a trickle is never
// over, however uneven the split between trickles.
func New(halfLife time.Duration, margin, minRate float64) *Shares {
	return &Shares{halfLife: halfLife, margin: max(margin, 1), minRate: minRate, keys: map[string]*sender{}}
}

// Add counts a request of n events accepted for key.
func (s *Shares) Add(key string, n int, now time.Time) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.sender(key, now)
	if d.perRequest == 0 {
		d.perRequest = float64(n)
	} else {
		d.perRequest += (float64(n) - d.perRequest) / 8
	}
	d.add(float64(n), now, s.halfLife)
	s.total.add(float64(n), now, s.halfLife)
	s.accepted.add(float64(n), now, s.halfLife)
}

// Refused counts a request refused for key (by this or another limit) as
// the events its accepted requests brought on average (one when none was).
func (s *Shares) Refused(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.sender(key, now)
	n := max(d.perRequest, 1)
	d.add(n, now, s.halfLife)
	s.total.add(n, now, s.halfLife)
}

func (s *Shares) sender(key string, now time.Time) *sender {
	d, ok := s.keys[key]
	if !ok {
		if len(s.keys) >= MaxKeys {
			s.evict(now)
		}
		d = &sender{decayed: decayed{at: now}}
		s.keys[string([]byte(key))] = d
		s.countedAt = time.Time{}
	}
	return d
}

func (s *Shares) evict(now time.Time) {
	s.countedAt = time.Time{}
	for k, d := range s.keys {
		if d.value(now, s.halfLife) < active {
			delete(s.keys, k)
		}
	}
	for k := range s.keys {
		if len(s.keys) < MaxKeys/2 {
			break
		}
		delete(s.keys, k)
	}
}

// Verdict is a key's standing: its share of the recent events, the fair
// share (an even split among the Keys sending), its rate in events a
// second, and whether it is over margin times its fair share and at
// least minRate.
type Verdict struct {
	Share, Fair float64
	Keys        int
	Rate        float64
	Over        bool
}

// Pace paces a key over its share instead of refusing it outright, so
// that it comes in evenly rather than in bursts each time the load lifts:
// one request of its usual batch per slot, at margin times its fair share
// of the events accepted lately (at least minRate a second). It reserves
// the key's next slot and returns how long from now it is, if that is
// within hold; otherwise it reserves nothing, ok is false, and wait says
// when a slot is free.
func (s *Shares) Pace(key string, v Verdict, now time.Time, hold time.Duration) (wait time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, found := s.keys[key]
	if !found {
		return 0, true
	}
	rate := max(s.margin*v.Fair*s.accepted.value(now, s.halfLife)*math.Ln2/s.halfLife.Seconds(), s.minRate)
	if rate <= 0 || math.IsNaN(rate) {
		return s.halfLife, false
	}
	slot := d.next
	if slot.Before(now) {
		slot = now
	}
	if wait = slot.Sub(now); wait > hold {
		return wait, false
	}
	d.next = slot.Add(time.Duration(max(d.perRequest, 1) / rate * float64(time.Second)))
	return wait, true
}

// Over says whether key sends more than its share. A key alone is never
// over (its fair share is everything), nor one that sent nothing lately.
func (s *Shares) Over(key string, now time.Time) Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.keys[key]
	if !ok {
		return Verdict{}
	}
	mine := d.value(now, s.halfLife)
	total := s.total.value(now, s.halfLife)
	if mine < active || total <= 0 {
		return Verdict{}
	}
	if s.countedAt.IsZero() || now.Sub(s.countedAt) >= s.halfLife/16 || now.Before(s.countedAt) {
		s.sending = 0
		for _, o := range s.keys {
			if o.value(now, s.halfLife) >= active {
				s.sending++
			}
		}
		s.countedAt = now
	}
	keys := max(s.sending, 1)
	// A steady r events a second decays to a count of r·halfLife/ln 2.
	rate := mine * math.Ln2 / s.halfLife.Seconds()
	v := Verdict{Share: min(mine/total, 1), Fair: 1 / float64(keys), Keys: keys, Rate: rate}
	v.Over = keys > 1 && v.Share > s.margin*v.Fair && rate >= s.minRate
	return v
}
