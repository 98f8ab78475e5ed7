package projections

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
)

// TestMain is projections_test's (one binary): it starts PostgreSQL.

// A cached row that no longer matches the table (a rolled-back batch, a
// rebuild, another replica) must never be written over it: the conditional
// write misses and the table's own row decides.
func TestStaleCacheNeverWins(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	run := uuid.New()
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	rec := func(v int64, e domain.Event) eventstore.Recorded {
		return eventstore.Recorded{Position: v, StreamID: run, Version: v, BusinessID: "b", Event: e}
	}
	events := []eventstore.Recorded{
		rec(1, domain.RunStarted{RunID: run, BusinessID: "b", WorkerID: "w", TotalCalls: 10, OccurredAt: at}),
		rec(2, domain.Heartbeat{CompletedCalls: 2, OccurredAt: at.Add(time.Minute)}),
		rec(3, domain.Heartbeat{CompletedCalls: 3, OccurredAt: at.Add(2 * time.Minute)}),
		rec(4, domain.Heartbeat{CompletedCalls: 4, OccurredAt: at.Add(3 * time.Minute)}),
	}
	for _, p := range []projection{{name: Runs, apply: applyRuns}, {name: ActiveRuns, apply: applyActiveRuns}} {
		t.Run(p.name, func(t *testing.T) {
			cache := newRowCache()
			// deliver applies r in a transaction of its own, as the subscriber
			// would: deferred writes are flushed before the commit.
			deliver := func(r eventstore.Recorded) error {
				return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					live := newPendingWrites(p.name, cache)
					if err := p.apply(ctx, tx, p.name, r, live); err != nil {
						return err
					}
					return live.flush(ctx, tx)
				})
			}
			apply := func(r eventstore.Recorded) {
				t.Helper()
				if err := deliver(r); err != nil {
					t.Fatal(err)
				}
			}
			apply(events[0])
			apply(events[1])
			// A batch that applied event 3 rolls back: the cache is now ahead of the table.
			tx, _ := pool.Begin(ctx)
			live := newPendingWrites(p.name, cache)
			if err := p.apply(ctx, tx, p.name, events[2], live); err != nil {
				t.Fatal(err)
			}
			if err := live.flush(ctx, tx); err != nil {
				t.Fatal(err)
			}
			_ = tx.Rollback(ctx)
			apply(events[2]) // redelivered
			apply(events[3])
			var completed int
			var version int64
			if err := pool.QueryRow(ctx, `SELECT completed_calls, version FROM `+p.name+` WHERE run_id = $1`, run).Scan(&completed, &version); err != nil {
				t.Fatal(err)
			}
			if completed != 4 || version != 4 {
				t.Fatalf("%s row = %d calls v%d, want 4 calls v4", p.name, completed, version)
			}
			// Someone else moves the row (a rebuild): the cached v4 must not overwrite v9.
			if _, err := pool.Exec(ctx, `UPDATE `+p.name+` SET version = 9, completed_calls = 9 WHERE run_id = $1`, run); err != nil {
				t.Fatal(err)
			}
			fifth := rec(5, domain.Heartbeat{CompletedCalls: 5, OccurredAt: at.Add(4 * time.Minute)})
			if err := deliver(fifth); err == nil {
				t.Fatal("a deferred write over a row that moved was flushed without error")
			}
			apply(fifth) // the redelivery reads the table and finds the row ahead
			if err := pool.QueryRow(ctx, `SELECT completed_calls, version FROM `+p.name+` WHERE run_id = $1`, run).Scan(&completed, &version); err != nil {
				t.Fatal(err)
			}
			if completed != 9 || version != 9 {
				t.Fatalf("%s row = %d calls v%d after a stale cached write, want 9 calls v9", p.name, completed, version)
			}
		})
	}
}
