package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
)

// TestMain is projections_test's (one binary): it starts PostgreSQL.

// A cached row that no longer matches the table (another replica's batch, a
// rebuild) must never be written over it: the conditional write misses, the
// batch fails as stale, and the table's own row decides the redelivery.
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
	}
	for _, name := range Names {
		t.Run(name, func(t *testing.T) {
			proj, _ := byName(name)
			cache := newRowCache()
			// deliver applies r in a transaction of its own, as a batch does,
			// and takes what it wrote into the cache once it committed.
			deliver := func(r eventstore.Recorded) error {
				var written []committedRow
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					set := newRowSet(proj, name, cache)
					if _, err := set.apply(ctx, tx, r); err != nil {
						return err
					}
					var err error
					written, err = set.flush(ctx, tx)
					return err
				})
				for _, w := range written {
					if err == nil && w.change.op == put {
						cache.Put(w.key, w.change.row)
					}
				}
				return err
			}
			for _, e := range events {
				if err := deliver(e); err != nil {
					t.Fatal(err)
				}
			}
			if r, ok := cache.Get(proj.key(events[2])); !ok || r.Version != 3 {
				t.Fatalf("cache after three events = %+v %v, want version 3", r, ok)
			}
			// Someone else moves the row (another replica, a rebuild): the
			// cached v3 must not be written over v9.
			if _, err := pool.Exec(ctx, `UPDATE `+name+` SET version = 9, completed_calls = 9 WHERE run_id = $1`, run); err != nil {
				t.Fatal(err)
			}
			fourth := rec(4, domain.Heartbeat{CompletedCalls: 4, OccurredAt: at.Add(4 * time.Minute)})
			var stale *staleViewError
			if err := deliver(fourth); !errors.As(err, &stale) {
				t.Fatalf("a deferred write over a row that moved: %v, want a stale view", err)
			}
			cache.Clear()                           // what a failed batch does
			if err := deliver(fourth); err != nil { // the redelivery reads the table and finds the row ahead
				t.Fatal(err)
			}
			var completed int
			var version int64
			if err := pool.QueryRow(ctx, `SELECT completed_calls, version FROM `+name+` WHERE run_id = $1`, run).Scan(&completed, &version); err != nil {
				t.Fatal(err)
			}
			if completed != 9 || version != 9 {
				t.Fatalf("%s row = %d calls v%d after a stale cached write, want 9 calls v9", name, completed, version)
			}
		})
	}
}
