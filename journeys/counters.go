package journeys

// Counters: what the journeys did, counted. All of a journey's counters
// are one value (a tally), and all of its counters of one hour another,
// so that a transaction reads and writes one key per journey it touches,
// however many counters it changes there: an event entering a journey
// with a split changes a dozen (entered at three steps, waiting, the arm,
// the experiment's assigned, and their hourly twins), each a B-tree
// search to read and another to write when they had a key each.
//
//	journey_counters         journey id → the journey's counters, a tally
//	journey_counters_hourly  journey id 0x00 hour (8-byte big-endian unix seconds of its start)
//	                         → the journey's counters of that hour, a tally (hourly.go)
//
// A tally is codec.Format1, the number of entries (uvarint), then each
// entry in name order: the name's length (uvarint), the name, the count
// (uvarint). Names:
//
//	step id 0x00 counter                        a step's counter (step "" is the journey as a whole)
//	0x01 experiment 0x00 variant 0x00 counter   an experiment's (assigned, converted, revenue_cents;
//	                                            journey_counters only)
//
// Earlier versions kept a key per counter (journey_counts, journey_hourly
// and journey_experiments); New folds them into tallies (migrate.go).

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"cartera/internal/codec"
)

var (
	bucketCounters = []byte("journey_counters")
	bucketHourly   = []byte("journey_counters_hourly")
)

// expMark starts the name of an experiment counter in a journey's tally:
// below every step id, and above the journey's own counters (step "").
const expMark = 0x01

// errTally is a stored tally that does not decode.
var errTally = errors.New("journey counters: bad record")

// eachCounter calls f with each entry of a stored tally, in name order;
// name is a slice of v.
func eachCounter(v []byte, f func(name []byte, n int64)) error {
	if len(v) == 0 {
		return nil
	}
	if v[0] != codec.Format1 {
		return fmt.Errorf("%w: unknown format %d", errTally, v[0])
	}
	v = v[1:]
	count, k := binary.Uvarint(v)
	if k <= 0 {
		return errTally
	}
	v = v[k:]
	for range count {
		l, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < l {
			return errTally
		}
		name := v[k : k+int(l)]
		v = v[k+int(l):]
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return errTally
		}
		v = v[k:]
		f(name, int64(n))
	}
	if len(v) != 0 {
		return errTally
	}
	return nil
}

// tally is one stored value of counters as a transaction has it, its
// entries in name order.
type tally struct {
	names [][]byte
	vals  []int64
	dirty bool
}

// decodeTally reads a stored tally (nil: none yet). The names are slices
// of one copy of v. On an error it returns the entries read before it.
func decodeTally(v []byte) (*tally, error) {
	t := &tally{}
	if len(v) < 2 {
		return t, eachCounter(v, nil)
	}
	v = bytes.Clone(v)
	if n, k := binary.Uvarint(v[1:]); k > 0 && n < uint64(len(v)) {
		// Room for the few counters a transaction adds.
		t.names, t.vals = make([][]byte, 0, n+4), make([]int64, 0, n+4)
	}
	err := eachCounter(v, func(name []byte, n int64) {
		t.names = append(t.names, name[:len(name):len(name)])
		t.vals = append(t.vals, n)
	})
	return t, err
}

func (t *tally) find(name []byte) (int, bool) {
	return slices.BinarySearchFunc(t.names, name, bytes.Compare)
}

// add adds delta to a counter (never below 0).
func (t *tally) add(name []byte, delta int64) {
	i, ok := t.find(name)
	if !ok {
		t.names = slices.Insert(t.names, i, bytes.Clone(name))
		t.vals = slices.Insert(t.vals, i, 0)
	}
	t.vals[i] = max(t.vals[i]+delta, 0)
	t.dirty = true
}

// get reads a counter.
func (t *tally) get(name []byte) int64 {
	if i, ok := t.find(name); ok {
		return t.vals[i]
	}
	return 0
}

// encode writes the tally in a fresh block (bbolt keeps a value until
// the commit).
func (t *tally) encode() []byte {
	size := 1 + binary.MaxVarintLen64
	for _, n := range t.names {
		size += len(n) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 0, size)
	b = append(b, codec.Format1)
	b = binary.AppendUvarint(b, uint64(len(t.names)))
	for i, n := range t.names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, uint64(max(t.vals[i], 0)))
	}
	return b
}

// hourRef names a journey's hour.
type hourRef struct {
	journey string
	hour    int64 // unix seconds of its start
}

// tallies are the tallies a run read, by journey and by journey and
// hour, written by flush if they changed.
type tallies struct {
	totals map[string]*tally
	hours  map[hourRef]*tally
	// The last of each looked up: a run counts a journey's counters one
	// after another.
	lastJourney string
	lastTotal   *tally
	lastHour    hourRef
	lastHourly  *tally
	// key is scratch for bucket keys, name for counter names.
	key, name []byte
}

// loadTally reads the tally at key in b. One that does not decode (the
// store damaged) is logged and counted on from the entries that did, as
// a counter of the key-per-counter layout that did not read was counted
// from 0: a damaged counter must not stop the journeys.
func (r *run) loadTally(b *bbolt.Bucket, key []byte) *tally {
	t, err := decodeTally(b.Get(key))
	if err != nil {
		r.e.log.Error("journey counters damaged: counting on from what could be read", "key", fmt.Sprintf("%q", key), "entries", len(t.names), "err", err)
	}
	return t
}

// total returns a journey's tally.
func (r *run) total(journey string) *tally {
	c := &r.counts
	if c.lastTotal != nil && c.lastJourney == journey {
		return c.lastTotal
	}
	t := c.totals[journey]
	if t == nil {
		c.key = append(c.key[:0], journey...)
		t = r.loadTally(r.tx.Bucket(bucketCounters), c.key)
		if c.totals == nil {
			c.totals = map[string]*tally{}
		}
		c.totals[journey] = t
	}
	c.lastJourney, c.lastTotal = journey, t
	return t
}

// hourly returns a journey's tally of the current hour.
func (r *run) hourly(journey string) *tally {
	c := &r.counts
	ref := hourRef{journey: journey, hour: r.now.Truncate(time.Hour).Unix()}
	if c.lastHourly != nil && c.lastHour == ref {
		return c.lastHourly
	}
	t := c.hours[ref]
	if t == nil {
		c.key = hourKey(c.key, journey, ref.hour)
		t = r.loadTally(r.tx.Bucket(bucketHourly), c.key)
		if c.hours == nil {
			c.hours = map[hourRef]*tally{}
		}
		c.hours[ref] = t
	}
	c.lastHour, c.lastHourly = ref, t
	return t
}

// flushCounters writes the tallies the run changed, in key order, and
// forgets them.
func (r *run) flushCounters() error {
	c := &r.counts
	if len(c.totals) > 0 {
		b := r.tx.Bucket(bucketCounters)
		for _, j := range sortedKeys(c.totals, strings.Compare) {
			if t := c.totals[j]; t.dirty {
				c.key = append(c.key[:0], j...)
				if err := b.Put(c.key, t.encode()); err != nil {
					return fmt.Errorf("write counters of %s: %w", j, err)
				}
			}
		}
	}
	if len(c.hours) > 0 {
		b := r.tx.Bucket(bucketHourly)
		for _, h := range sortedKeys(c.hours, func(a, b hourRef) int {
			if n := strings.Compare(a.journey, b.journey); n != 0 {
				return n
			}
			return cmp.Compare(a.hour, b.hour)
		}) {
			if t := c.hours[h]; t.dirty {
				c.key = hourKey(c.key, h.journey, h.hour)
				if err := b.Put(c.key, t.encode()); err != nil {
					return fmt.Errorf("write hourly counters of %s: %w", h.journey, err)
				}
			}
		}
	}
	clear(c.totals)
	clear(c.hours)
	c.lastTotal, c.lastHourly = nil, nil
	return nil
}

func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}

// counterName builds a step counter's name in buf (reused).
func counterName(buf []byte, step, what string) []byte {
	buf = append(buf[:0], step...)
	buf = append(buf, 0)
	return append(buf, what...)
}

// expName builds an experiment counter's name in buf (reused).
func expName(buf []byte, experiment, variant, what string) []byte {
	buf = append(buf[:0], expMark)
	buf = append(buf, experiment...)
	buf = append(buf, 0)
	buf = append(buf, variant...)
	buf = append(buf, 0)
	return append(buf, what...)
}

// count adds to a per-step counter (step "" is the journey as a whole),
// and to its hourly twin when it grows (not "waiting", a gauge). Counters
// are kept in memory for the transaction and written by Flush.
func (r *run) count(journey, step, what string, delta int64) {
	r.counts.name = counterName(r.counts.name, step, what)
	r.total(journey).add(r.counts.name, delta)
	if delta > 0 && what != "waiting" {
		r.hourly(journey).add(r.counts.name, delta)
	}
}

// countArm adds one to a split step's counter of runs through an arm
// ("variant:" and its name).
func (r *run) countArm(journey, step, arm string) {
	r.counts.name = append(counterName(r.counts.name, step, "variant:"), arm...)
	r.total(journey).add(r.counts.name, 1)
	r.hourly(journey).add(r.counts.name, 1)
}

// countHourly adds to a counter of the current hour only.
func (r *run) countHourly(journey, step, what string, delta int64) {
	r.counts.name = counterName(r.counts.name, step, what)
	r.hourly(journey).add(r.counts.name, delta)
}

// expCount adds to an experiment counter.
func (r *run) expCount(journey, experiment, variant, what string, delta int64) {
	r.counts.name = expName(r.counts.name, experiment, variant, what)
	r.total(journey).add(r.counts.name, delta)
}

// expValue reads an experiment counter as this transaction has it.
func (r *run) expValue(journey, experiment, variant, what string) int64 {
	r.counts.name = expName(r.counts.name, experiment, variant, what)
	return r.total(journey).get(r.counts.name)
}
