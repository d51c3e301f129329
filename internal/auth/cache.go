package auth

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ttlCache is a size-bounded LRU whose entries also expire at their own deadline. It holds
// review results keyed by a hash, so it never stores a credential.
type ttlCache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used
	items map[K]*list.Element
}

type cacheEntry[K comparable, V any] struct {
	key     K
	value   V
	expires time.Time
}

func newTTLCache[K comparable, V any](max int) *ttlCache[K, V] {
	if max < 1 {
		max = 1
	}
	return &ttlCache[K, V]{max: max, order: list.New(), items: make(map[K]*list.Element)}
}

// get returns the live value stored for k; an expired entry is dropped.
func (c *ttlCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*cacheEntry[K, V])
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return e.value, true
}

// put stores v until expires, evicting the least recently used entry when full.
func (c *ttlCache[K, V]) put(k K, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*cacheEntry[K, V])
		e.value, e.expires = v, expires
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&cacheEntry[K, V]{key: k, value: v, expires: expires})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheEntry[K, V]).key)
	}
}

func (c *ttlCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// flight collapses concurrent calls with the same key into one (x/sync/singleflight, typed): a
// burst of requests carrying the same new token costs one review, not one per request.
type flight[V any] struct{ g singleflight.Group }

func (f *flight[V]) do(k [32]byte, fn func() (V, error)) (V, error) {
	v, err, _ := f.g.Do(string(k[:]), func() (any, error) { return fn() })
	return v.(V), err
}
