package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/dberr"
)

func (g *group) countQuery(noMsg bool, err error) {
	if g.opts.Metrics == nil {
		return
	}
	result := "events"
	switch {
	case err != nil:
		result = "error"
	case noMsg:
		result = "empty"
	}
	g.opts.Metrics.Queries.WithLabelValues(g.proj.name, result).Inc()
}

// group is one consumer group: a projection applied by its own watermill-sql
// subscriber, and what outlives a batch: the row cache, the suspects of a
// batch that failed, and how long to wait before asking again.
type group struct {
	wsql.Beginner // the pool; BeginTx (watermill.go) makes its transactions batches
	proj          projection
	opts          Options
	cache         *rowCache

	mu       sync.Mutex
	suspects map[int64]bool
	// errors counts consecutive subscriber queries that failed for the
	// database's availability, for the backoff.
	errors int
	// told is the highest log position this group was told is committed
	// (Projector.Wake); applied the highest it applied itself. While told is
	// ahead of what any replica applied, a caught-up query is retried soon:
	// the event may be hidden behind a transaction still open.
	told, applied int64
	retryPause    time.Duration
	// hiddenSince is when the group began waiting on the horizon for an
	// event it was told of (zero when it is not waiting).
	hiddenSince time.Time
	horizon     *horizon
	// retrySoon is set by a batch whose commit failed for the database's
	// availability: the next caught-up wait is short.
	retrySoon bool
	// readAgain is set when the next read should come at once: the last
	// batch held a whole read's worth of events (catching up: more may
	// follow that nobody announces), or it failed.
	readAgain bool
	// signals counts the wake-ups sent (notify, nudge); readSignals is
	// its value when the group's last read began. A wake-up sent since
	// then may announce what that read could not see; one sent before it
	// announced nothing that read did not look for. (Positions cannot tell:
	// a read follows transaction order, and an event can have a lower
	// position than one already applied and still be hidden.)
	signals, readSignals uint64
	// readBegan is when (readSeq) the group's last read began.
	readBegan uint64
	wake      chan struct{}
	// siblings are this replica's other consumer groups: a batch of one
	// holds a transaction id that hides newer events from the others.
	siblings []*group
	stop     <-chan struct{}
}

func newGroup(proj projection, beginner wsql.Beginner, opts Options) *group {
	return &group{Beginner: beginner, proj: proj, opts: opts, cache: newRowCache(), suspects: map[int64]bool{},
		wake: make(chan struct{}, 1)}
}

// batchSize is the most events one read of the group returns.
func (g *group) batchSize() int {
	if g.opts.BatchSize > 0 {
		return g.opts.BatchSize
	}
	return defaultBatchSize
}

// isSuspect reports whether the event at pos was in a batch that failed in SQL.
func (g *group) isSuspect(pos int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.suspects[pos]
}

// committed takes a committed batch's rows into the cache and clears its suspects.
func (g *group) committed(b *batch) {
	for _, w := range b.written {
		if w.change.op == put {
			g.cache.Put(w.key, w.change.row)
		} else {
			g.cache.Delete(w.key)
		}
	}
	c := b.change()
	g.mu.Lock()
	for _, pos := range b.delivered {
		delete(g.suspects, pos)
	}
	g.applied = max(g.applied, c.MaxPosition)
	g.readAgain = b.page != nil && len(b.page.events) >= g.batchSize() // poison included: the read was full
	g.mu.Unlock()
	if len(b.delivered) == 0 {
		return
	}
	if g.opts.Feed != nil {
		g.opts.Feed.Publish(c)
	}
	for _, s := range g.siblings {
		s.nudge(b.began)
	}
}

// readSeq orders the beginnings of the replica's reads (batches).
var readSeq atomic.Uint64

// nudge wakes the group without news of an event: a sibling group's batch,
// begun at began (readSeq), committed, and the events its transaction held
// hidden may be visible now. Only a read that began after that batch can
// have been blind to them: a read that began before it took its snapshot
// before the batch's transaction existed, and the next read will take a
// snapshot after its end.
func (g *group) nudge(began uint64) {
	g.mu.Lock()
	blind := g.readBegan > began
	if blind {
		g.signals++
	}
	g.mu.Unlock()
	if !blind {
		return
	}
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// notify tells the group that the log holds an event at position.
func (g *group) notify(position int64) {
	g.mu.Lock()
	g.told = max(g.told, position)
	g.signals++
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// retryBudget bounds how long a caught-up group keeps asking for an event
// it was told of but cannot see yet.
const retryBudget = 250 * time.Millisecond

// caughtUpWait is how long a caught-up subscriber waits before asking
// again (it waits here, in HandleError, and returns 0: watermill.go): until woken (an append committed, a sibling group committed a
// batch, another replica said so), at most PollInterval. While it was told
// of an event nobody has applied yet (hidden behind a transaction still
// open, or applied by a replica that has not said so yet), it asks again at
// the next wake-up or after a millisecond or two, for up to retryBudget.
func (g *group) caughtUpWait() time.Duration {
	g.mu.Lock()
	applied := g.applied
	if g.opts.Feed != nil {
		applied = max(applied, g.opts.Feed.MaxApplied(g.proj.name))
	}
	wait := g.opts.PollInterval
	var moved <-chan struct{}
	switch {
	case g.told > applied && g.retryPause < retryBudget:
		pause := min(time.Millisecond+g.retryPause/16, 8*time.Millisecond)
		g.retryPause += pause
		wait = pause
	case g.told > applied && g.horizon != nil && (g.hiddenSince.IsZero() || time.Since(g.hiddenSince) < horizonBudget):
		// Still hidden: most likely behind a transaction still open. Wait
		// for the cluster's horizon to move (see horizon.go).
		if g.hiddenSince.IsZero() {
			g.hiddenSince = time.Now()
		}
		moved = g.horizon.moved(g)
	default:
		g.told, g.retryPause, g.hiddenSince = applied, 0, time.Time{} // nothing pending (or given up on)
		if g.signals == g.readSignals {
			// A wake-up still pending was sent before the last read began:
			// that read looked for what it announced. Taken now, it does
			// not turn into a read that finds nothing. A wake-up sent after
			// this moves g.signals and wakes the group again.
			select {
			case <-g.wake:
			default:
			}
		}
	}
	g.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-g.wake:
	case <-g.stop:
	case <-timer.C:
	case <-moved:
	}
	return 0
}

// failed handles a batch that rolled back: the cache may hold rows the
// failure leaves wrong, so it starts over; a failure that is not the
// database's availability makes the batch's events suspects.
func (g *group) failed(b *batch, err error) {
	g.cache.Clear()
	g.mu.Lock()
	g.readAgain = true
	g.mu.Unlock()
	if err == nil {
		return // rolled back by the subscriber (shutdown, or its own error)
	}
	if _, transient := classify(err); transient || len(b.delivered) == 0 {
		g.mu.Lock()
		g.retrySoon = true // watermill does not pass a failed commit on to HandleError
		g.mu.Unlock()
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, pos := range b.delivered {
		g.suspects[pos] = true
	}
	g.opts.Logger.Warn("projection batch failed; its events will be applied one by one", "projection", g.proj.name,
		"events", len(b.delivered), "err", err)
}

// classify says whether a batch's failure is worth retrying as it is (the
// database's availability, or a stale cache) rather than looking for the
// event that fails.
func classify(err error) (dberr.Kind, bool) {
	var stale *staleViewError
	switch {
	case errors.As(err, &stale):
		return "stale_cache", true
	case errors.Is(err, pgx.ErrTxCommitRollback):
		// A statement of the subscriber's failed unseen (watermill does not
		// check its SELECT's row errors: a lock or statement timeout); this
		// batch's own statements all succeeded, or it would have failed first.
		return dberr.Timeout, true
	}
	return dberr.Transient(err)
}

// recordPoison records an event that cannot be applied in projection_poison,
// in the batch's transaction, so the group moves past it.
func (g *group) recordPoison(ctx context.Context, tx pgx.Tx, rec eventstore.Recorded, cause error) error {
	if _, err := tx.Exec(ctx, `INSERT INTO projection_poison (consumer_group, position, event_id, error)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, g.proj.name, rec.Position, rec.EventID, cause.Error()); err != nil {
		return fmt.Errorf("record poison event %d: %w", rec.Position, err)
	}
	g.opts.Logger.Error("projection skipped a poison event", "projection", g.proj.name, "position", rec.Position,
		"event_id", rec.EventID, "err", cause)
	if g.opts.Metrics != nil {
		g.opts.Metrics.Poisoned.WithLabelValues(g.proj.name).Inc()
	}
	return nil
}

// backoff is the pause after the n-th consecutive failure (n ≥ 1): 50 ms,
// doubling, at most 2 s.
func backoff(n int) time.Duration {
	return min(50*time.Millisecond<<min(max(n, 1)-1, 6), 2*time.Second)
}
