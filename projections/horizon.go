package projections

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The projector reads only events below the cluster's xmin (the oldest
// transaction id still running), so an event committed while an older
// transaction is open stays hidden until that transaction ends. Nothing
// tells the projector when that happens (the event's own wake-up came
// earlier), so a group that was told of an event it still cannot see asks
// the horizon: one watcher per replica polls the xmin, a cheap query that
// takes no transaction id, and wakes the waiting groups when it moves.
const (
	// horizonEvery is how often the watcher reads the xmin while a group waits.
	horizonEvery = 20 * time.Millisecond
	// horizonBudget is how long a group waits on the horizon for one event
	// before it falls back to its poll (a transaction open that long is an
	// operator's problem; the poll still finds the event after it ends).
	horizonBudget = time.Minute
)

// horizon watches the cluster's xmin for the groups waiting behind it.
type horizon struct {
	pool *pgxpool.Pool
	stop <-chan struct{}

	mu      sync.Mutex
	waiters map[*group]*horizonWait
	running bool
}

type horizonWait struct {
	moved chan struct{}
	// xmin is the horizon when the wait began (0 until the watcher read it).
	xmin uint64
}

func newHorizon(pool *pgxpool.Pool, stop <-chan struct{}) *horizon {
	return &horizon{pool: pool, stop: stop, waiters: map[*group]*horizonWait{}}
}

// moved returns a channel closed once the xmin moves past what it is now.
func (h *horizon) moved(g *group) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.waiters[g]
	if !ok {
		w = &horizonWait{moved: make(chan struct{})}
		h.waiters[g] = w
	}
	if !h.running {
		h.running = true
		go h.watch()
	}
	return w.moved
}

// watch reads the xmin while anyone waits, and wakes each waiter once it moved.
func (h *horizon) watch() {
	ticker := time.NewTicker(horizonEvery)
	defer ticker.Stop()
	for {
		xmin, err := h.read()
		h.mu.Lock()
		if err == nil {
			for g, w := range h.waiters {
				switch {
				case w.xmin == 0:
					w.xmin = xmin
				case w.xmin != xmin:
					close(w.moved)
					delete(h.waiters, g)
				}
			}
		}
		if len(h.waiters) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		select {
		case <-h.stop:
			h.mu.Lock()
			h.running = false
			h.mu.Unlock()
			return
		case <-ticker.C:
		}
	}
}

func (h *horizon) read() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var xmin int64
	err := h.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&xmin)
	return uint64(xmin), err
}
