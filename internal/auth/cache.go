package auth

import (
	"container/list"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// reviews holds the API server's answers of one kind (token reviews, access reviews) by the hash
// of what was asked, and asks at most once at a time per hash: concurrent callers with the same new
// question share one review (x/sync/singleflight), so a burst of requests carrying the same new
// token costs one review, not one per request. results counts each answer by where it came from
// (cache_hit, reviewed, error).
type reviews[V any] struct {
	cache   *ttlCache[[32]byte, V]
	flight  singleflight.Group
	now     func() time.Time
	results *prometheus.CounterVec
}

func newReviews[V any](max int, now func() time.Time, results *prometheus.CounterVec) *reviews[V] {
	return &reviews[V]{cache: newTTLCache[[32]byte, V](max), now: now, results: results}
}

// get returns the live answer kept for key, or asks for it (ask returns the answer and until when
// it may be kept). An error is not kept.
func (r *reviews[V]) get(key [32]byte, ask func() (V, time.Time, error)) (V, error) {
	if v, ok := r.cache.get(key, r.now()); ok {
		r.results.WithLabelValues("cache_hit").Inc()
		return v, nil
	}
	v, err, _ := r.flight.Do(string(key[:]), func() (any, error) {
		if v, ok := r.cache.get(key, r.now()); ok { // answered while this caller waited for the flight
			return v, nil
		}
		v, expires, err := ask()
		if err != nil {
			r.results.WithLabelValues("error").Inc()
			return v, err
		}
		r.results.WithLabelValues("reviewed").Inc()
		r.cache.put(key, v, expires)
		return v, nil
	})
	if err != nil {
		var zero V
		return zero, err
	}
	return v.(V), nil
}
