package runs

import (
	"github.com/google/uuid"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/bounded"
)

// maxCachedStates bounds the Runner's state cache; past it, it starts over.
const maxCachedStates = 100_000

// stateCache holds the state each run had after this process's last append
// to it (or its last read of the snapshot). It is a guess, never the truth:
// an append made from it is conditional on the version, and a command that
// would write nothing from a cached state (a coalesced heartbeat, a repeated
// cancel) is re-decided from the snapshot before it is answered, since
// another replica may have moved the run. A refusal decided from it is
// re-decided from the snapshot too, since a refusal carries the run's state
// and the run may have ended elsewhere and been erased since (refusals are
// rare: one more read each). An ended run is never kept (nothing more will be
// appended to it).
type stateCache struct {
	m *bounded.Map[uuid.UUID, eventstore.Snapshot]
}

func newStateCache() stateCache {
	return stateCache{m: bounded.New[uuid.UUID, eventstore.Snapshot](maxCachedStates)}
}

func (c stateCache) get(id uuid.UUID) (eventstore.Snapshot, bool) { return c.m.Get(id) }

func (c stateCache) put(id uuid.UUID, r eventstore.Snapshot) {
	if r.Run.Ended() {
		c.m.Delete(id)
		return
	}
	c.m.Put(id, r)
}

func (c stateCache) drop(id uuid.UUID) { c.m.Delete(id) }
