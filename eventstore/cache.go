package eventstore

import (
	"sync"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// maxCachedStates bounds the Runner's state cache; past it, it starts over.
const maxCachedStates = 100_000

// stateCache holds the state each run had after this process's last append
// to it. It is a guess, never the truth: appends made from it are
// conditional on the version, and refusals or no-ops are re-decided from the
// snapshot. Ended runs are not kept (nothing more will be appended).
type stateCache struct {
	mu   sync.Mutex
	runs map[uuid.UUID]domain.Run
}

func (c *stateCache) get(id uuid.UUID) (domain.Run, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.runs[id]
	return r, ok
}

func (c *stateCache) put(id uuid.UUID, r domain.Run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Ended() {
		delete(c.runs, id)
		return
	}
	if c.runs == nil || len(c.runs) >= maxCachedStates {
		c.runs = make(map[uuid.UUID]domain.Run)
	}
	c.runs[id] = r
}

func (c *stateCache) drop(id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.runs, id)
}
