package projections

import "sync"

// maxCachedRows bounds a projection's row cache; past it the cache starts over.
const maxCachedRows = 50_000

// rowCache remembers the rows a live projection last wrote, keyed like its
// table, so that the next event of a run costs one conditional UPDATE instead
// of a read and a write. It is only a guess about the table: every write
// through it is conditional on the row being unchanged, and on any doubt the
// entry is dropped. A nil *rowCache caches nothing.
type rowCache struct {
	mu   sync.Mutex
	rows map[string]RunRow
}

func newRowCache() *rowCache { return &rowCache{rows: map[string]RunRow{}} }

func (c *rowCache) get(key string) (RunRow, bool) {
	if c == nil {
		return RunRow{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.rows[key]
	return r, ok
}

func (c *rowCache) put(key string, r RunRow) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rows) >= maxCachedRows {
		clear(c.rows)
	}
	c.rows[key] = r
}

// reset forgets everything (after a failed flush the entries are not to be trusted).
func (c *rowCache) reset() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.rows)
}

// rowCache is the live path's cache; nil (no caching) for the rebuild path.
func (p *pendingWrites) rowCache() *rowCache {
	if p == nil {
		return nil
	}
	return p.cache
}

func (c *rowCache) drop(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.rows, key)
}

// settle records the outcome of a write of next: kept if it was written (an
// ended run leaves active_runs, so it is dropped there), forgotten otherwise.
func (c *rowCache) settle(key string, next RunRow, written bool, err error) {
	if err == nil && written && !(next.Ended() && key == next.BusinessID) {
		c.put(key, next)
		return
	}
	c.drop(key)
}
