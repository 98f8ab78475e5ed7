package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
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

// positionOf reads the log position a message carries.
func positionOf(msg *message.Message) (int64, error) {
	return strconv.ParseInt(msg.Metadata.Get(metaPosition), 10, 64)
}

func parseUUID(s string) uuid.UUID {
	id, _ := uuid.Parse(s)
	return id
}

// group is one consumer group: a projection applied by its own watermill-sql
// subscriber, and what outlives a batch: the row cache, the suspects of a
// batch that failed, and how long to wait before asking again.
type group struct {
	wsql.Beginner // the pool; BeginTx below wraps its transactions
	proj          projection
	opts          Options
	cache         *rowCache

	mu       sync.Mutex
	suspects map[int64]bool
	// errors counts consecutive subscriber queries that failed for the
	// database's availability, for the backoff.
	errors int
}

func newGroup(proj projection, beginner wsql.Beginner, opts Options) *group {
	return &group{Beginner: beginner, proj: proj, opts: opts, cache: newRowCache(), suspects: map[int64]bool{}}
}

// BeginTx implements wsql.Beginner: every subscriber transaction is a batch,
// with the session limits of a projector transaction (see Options).
func (g *group) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	inner, err := g.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	pt, ok := inner.(*wsql.PgxTx)
	if !ok {
		_ = inner.Rollback()
		return nil, errors.New("subscriber transaction is not pgx")
	}
	// Read models are rebuildable and the offset commits with them, so a
	// crash that loses the last projector commits only replays those events:
	// no need to wait for the WAL flush.
	_, err = pt.Tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true),
		set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true),
		set_config('idle_in_transaction_session_timeout', $3, true)`,
		millis(g.opts.LockTimeout), millis(g.opts.StatementTimeout), millis(g.opts.IdleInTransactionTimeout))
	if err != nil {
		_ = inner.Rollback()
		return nil, err
	}
	return &batch{g: g, inner: inner, tx: pt.Tx, rows: newRowSet(g.proj, g.proj.name, g.cache)}, nil
}

func millis(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// handle applies one delivered event through the batch that delivered it.
func (g *group) handle(msg *message.Message) error {
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return errors.New("message has no subscriber transaction")
	}
	b, ok := tx.(*batch)
	if !ok {
		return errors.New("subscriber transaction is not a batch")
	}
	rec, err := RecordedFromMessage(msg)
	if err != nil { // it can never apply: record it and move on
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.done {
			return errBatchDone
		}
		pos, _ := positionOf(msg)
		if perr := g.recordPoison(msg.Context(), b.tx, eventstore.Recorded{Position: pos, EventID: parseUUID(msg.UUID)}, err); perr != nil {
			b.err = perr
		}
		return nil
	}
	if err := b.apply(msg.Context(), rec); err != nil {
		return err
	}
	if g.opts.Metrics != nil {
		g.opts.Metrics.Applied.WithLabelValues(g.proj.name).Inc()
	}
	return nil
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
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, pos := range b.delivered {
		delete(g.suspects, pos)
	}
}

// failed handles a batch that rolled back: the cache may hold rows the
// failure leaves wrong, so it starts over; a failure that is not the
// database's availability makes the batch's events suspects.
func (g *group) failed(b *batch, err error) {
	g.cache.Clear()
	if err == nil {
		return // rolled back by the subscriber (shutdown, or its own error)
	}
	if _, transient := classify(err); transient {
		return // HandleError backs off and logs
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
	if errors.As(err, &stale) {
		return "stale_cache", true
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

// HandleError implements wsql.BackoffManager: how long the subscriber waits
// before its next query.
// A query that failed for the database's availability (unreachable, a lock
// not granted in time, …) is retried with a growing pause up to 2 s and
// logged at most once a second; a batch that failed on an event is retried
// at once, its events now suspects.
func (g *group) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	g.countQuery(noMsg, err)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.errors = 0
		if noMsg {
			return g.opts.PollInterval
		}
		return 0
	}
	kind, transient := classify(err)
	if !transient {
		g.errors = 0
		return 10 * time.Millisecond
	}
	g.errors++
	g.opts.logs.Log(context.Background(), slog.LevelWarn, g.proj.name+":"+string(kind), "projection query failed; retrying",
		"projection", g.proj.name, "consecutive", g.errors, "err", err)
	return min(50*time.Millisecond<<min(g.errors-1, 6), 2*time.Second)
}
