package profiles

import (
	"hash/maphash"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// hotProfiles keeps the decoded profiles of the people the writer touched
// last, between transactions, so that a person's next event does not
// decode their record again: the least recently written are let go past
// max.
//
// A profile is kept only as the writer encoded it (at a commit's flush),
// with a hash of the record it was encoded to. A transaction takes a
// profile out before it changes it, and only if the record in the file
// still has that hash: whatever else wrote the record (a journey's
// derived events, an erasure, a failed commit) makes the hash differ, and
// the record is decoded as it would be without the cache. So what is kept
// can be stale, but is never used stale.
//
// Erase drops its person at once, so that no decoded personal data stays
// in memory after an erasure.
type hotProfiles struct {
	mu   sync.Mutex
	max  int
	seed maphash.Seed
	m    map[string]*hotEntry
	// head is the most recently kept, head.prev the least (a ring).
	head *hotEntry

	hit, miss, stale prometheus.Counter
}

type hotEntry struct {
	id         string
	p          *Profile
	sum        uint64
	prev, next *hotEntry
}

// newHotProfiles holds up to max profiles (none: nil, which holds
// nothing).
func newHotProfiles(max int, m *Metrics) *hotProfiles {
	if max <= 0 {
		return nil
	}
	return &hotProfiles{
		max: max, seed: maphash.MakeSeed(), m: make(map[string]*hotEntry, min(max, 1<<16)),
		hit: m.HotReads.WithLabelValues("hit"), miss: m.HotReads.WithLabelValues("miss"), stale: m.HotReads.WithLabelValues("stale"),
	}
}

func (h *hotProfiles) sum(record []byte) uint64 { return maphash.Bytes(h.seed, record) }

// take removes id's profile and returns it if it was decoded from, or
// encoded to, record; otherwise nil. The caller owns what it gets.
func (h *hotProfiles) take(id string, record []byte) *Profile {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	e := h.m[id]
	if e != nil {
		h.unlink(e)
	}
	h.mu.Unlock()
	switch {
	case e == nil:
		h.miss.Inc()
		return nil
	case e.sum != h.sum(record):
		h.stale.Inc()
		return nil
	}
	h.hit.Inc()
	return e.p
}

// keep holds p, which was just encoded to record; p must not change
// afterwards unless taken back first.
func (h *hotProfiles) keep(p *Profile, record []byte) {
	if h == nil {
		return
	}
	sum := h.sum(record)
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.m[p.ID]; e != nil {
		h.unlink(e)
	}
	e := &hotEntry{id: p.ID, p: p, sum: sum}
	h.m[p.ID] = e
	if h.head == nil {
		e.prev, e.next = e, e
	} else {
		e.next, e.prev = h.head, h.head.prev
		e.prev.next, e.next.prev = e, e
	}
	h.head = e
	for len(h.m) > h.max {
		h.unlink(h.head.prev)
	}
}

// drop lets go of id's profile, if held.
func (h *hotProfiles) drop(id string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.m[id]; e != nil {
		h.unlink(e)
	}
}

// len is how many profiles are held.
func (h *hotProfiles) len() int {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

func (h *hotProfiles) unlink(e *hotEntry) {
	delete(h.m, e.id)
	if e.next == e {
		h.head = nil
	} else {
		e.prev.next, e.next.prev = e.next, e.prev
		if h.head == e {
			h.head = e.next
		}
	}
	e.prev, e.next = nil, nil
}
