package journeys

import (
	"bytes"
	"encoding/binary"
	"slices"

	"go.etcd.io/bbolt"
)

// counters are the counters one transaction changed, each with its value
// as the transaction has it, written to their bucket by flush. An event
// touches the same few counters again and again (a hundred journeys
// entered, each counting entered, sent, an arm): a counter already held
// costs a map lookup, with no allocation for its key.
type counters struct {
	idx  map[string]int // key → index in vals
	vals []int64
	// keys and buf are flush's scratch: the keys in order, and the one
	// being written (bbolt copies it).
	keys []string
	buf  []byte
	// cur reads the stored values: one cursor for the transaction's reads
	// of a bucket, where each Get would make one (and grow its stack).
	cur *bbolt.Cursor
}

// stored reads a counter's stored value in b.
func (c *counters) stored(b *bbolt.Bucket, key []byte) int64 {
	if c.cur == nil || c.cur.Bucket() != b {
		c.cur = b.Cursor()
	}
	if k, v := c.cur.Seek(key); bytes.Equal(k, key) && len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// slot returns the index of key, reading its stored value from b the
// first time.
func (c *counters) slot(b *bbolt.Bucket, key []byte) int {
	if i, ok := c.idx[string(key)]; ok {
		return i
	}
	n := c.stored(b, key)
	if c.idx == nil {
		c.idx = map[string]int{}
	}
	i := len(c.vals)
	c.idx[string(key)] = i
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
	return c.stored(b, key)
}

// flush writes the counters to b, in key order, and forgets them. In
// order, because a key new to a B-tree page is inserted into the page's
// sorted list: in order, each lands after those before it instead of
// moving them. bbolt copies a key (so one buffer serves them all) but
// keeps the value until the commit: one fresh block holds the values.
func (c *counters) flush(b *bbolt.Bucket) error {
	if len(c.vals) == 0 {
		return nil
	}
	c.keys = c.keys[:0]
	for k := range c.idx {
		c.keys = append(c.keys, k)
	}
	slices.Sort(c.keys)
	vals := make([]byte, 8*len(c.vals))
	for _, k := range c.keys {
		i := c.idx[k]
		v := vals[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(v, uint64(c.vals[i]))
		c.buf = append(c.buf[:0], k...)
		if err := b.Put(c.buf, v); err != nil {
			return err
		}
	}
	clear(c.idx)
	clear(c.keys)
	c.vals, c.keys = c.vals[:0], c.keys[:0]
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
