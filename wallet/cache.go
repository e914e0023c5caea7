package wallet

import (
	"container/list"
	"sync"
)

// cache keeps signed passes until they change: an unchanged pass is
// served again without an RSA signature. It is bounded in bytes and drops
// the least recently served first.
type cache struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // front: most recent; values *cached
	by    map[string]*list.Element
}

type cached struct {
	serial string
	tag    uint64
	b      []byte
}

func newCache(maxBytes int) *cache {
	return &cache{max: maxBytes, order: list.New(), by: map[string]*list.Element{}}
}

// get returns the pass signed at tag.
func (c *cache) get(serial string, tag uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.by[serial]
	if !ok {
		return nil, false
	}
	v := e.Value.(*cached)
	if v.tag != tag {
		return nil, false
	}
	c.order.MoveToFront(e)
	return v.b, true
}

// put keeps b as the pass signed at tag, unless a newer one is there.
func (c *cache) put(serial string, tag uint64, b []byte) {
	if len(b) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.by[serial]; ok {
		v := e.Value.(*cached)
		if v.tag > tag {
			return
		}
		c.size += len(b) - len(v.b)
		v.tag, v.b = tag, b
		c.order.MoveToFront(e)
	} else {
		c.by[serial] = c.order.PushFront(&cached{serial: serial, tag: tag, b: b})
		c.size += len(b)
	}
	for c.size > c.max {
		e := c.order.Back()
		v := e.Value.(*cached)
		c.order.Remove(e)
		delete(c.by, v.serial)
		c.size -= len(v.b)
	}
}

func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	c.by = map[string]*list.Element{}
	c.size = 0
}
