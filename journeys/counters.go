package journeys

import (
	"encoding/binary"

	"go.etcd.io/bbolt"
)

// counters are the counters one transaction changed, each with its value
// as the transaction has it, written to their bucket by flush. An event
// touches the same few counters again and again (a hundred journeys
// entered, each counting entered, sent, an arm): a counter already held
// costs a map lookup, with no allocation for its key.
type counters struct {
	idx  map[string]int
	keys [][]byte
	vals []int64
	// arena holds the keys, one after the other.
	arena []byte
}

// slot returns the index of key, reading its stored value from b the
// first time.
func (c *counters) slot(b *bbolt.Bucket, key []byte) int {
	if i, ok := c.idx[string(key)]; ok {
		return i
	}
	var n int64
	if v := b.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	if c.idx == nil {
		c.idx = map[string]int{}
	}
	start := len(c.arena)
	c.arena = append(c.arena, key...)
	i := len(c.vals)
	c.idx[string(key)] = i
	c.keys = append(c.keys, c.arena[start:len(c.arena):len(c.arena)])
	c.vals = append(c.vals, n)
	return i
}

// add adds delta to a counter (never below 0).
func (c *counters) add(b *bbolt.Bucket, key []byte, delta int64) {
	i := c.slot(b, key)
	c.vals[i] = max(c.vals[i]+delta, 0)
}

// get reads a counter as the transaction has it.
func (c *counters) get(b *bbolt.Bucket, key []byte) int64 {
	if i, ok := c.idx[string(key)]; ok {
		return c.vals[i]
	}
	if v := b.Get(key); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// flush writes the counters to b and forgets them. bbolt copies the keys
// (so the arena is used again) but keeps the values until the commit: one
// fresh block holds them.
func (c *counters) flush(b *bbolt.Bucket) error {
	vals := make([]byte, 8*len(c.vals))
	for i, k := range c.keys {
		v := vals[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(v, uint64(c.vals[i]))
		if err := b.Put(k, v); err != nil {
			return err
		}
	}
	clear(c.idx)
	clear(c.keys)
	c.keys, c.vals, c.arena = c.keys[:0], c.vals[:0], c.arena[:0]
	return nil
}

// counterKey builds a key from parts joined by 0x00 in buf (reused).
func counterKey(buf []byte, parts ...string) []byte {
	buf = buf[:0]
	for i, p := range parts {
		if i > 0 {
			buf = append(buf, 0)
		}
		buf = append(buf, p...)
	}
	return buf
}
