package auth

// len is how many entries c holds (expired ones included until they are read); tests only.
func (c *ttlCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
