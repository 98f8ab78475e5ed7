package reaper_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/reaper"
	"github.com/runledger/runledger/runs"
)

// replica is one replica's reaper on a pool of its own, with the real
// advisory lock.
func replica(t *testing.T, url string, clock *fakeclock.Clock, name string, tracer pgx.QueryTracer) *reaper.Reaper {
	t.Helper()
	pool := pgtest.TracedPool(t, url, tracer)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	rn.Now = clock.Now
	r, err := reaper.New(reaper.Config{Runner: rn, Pool: pool, Interval: time.Second, Logger: quiet, Instance: name})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Two replicas sweep under the real advisory lock: while one holds it (its
// sweep held up on the silent run's row), the other skips; the run is
// reaped exactly once, and once the lock is free the other sweeps again.
func TestLockedSweepAcrossTwoReplicas(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	url := pgtest.URL(t)
	pool := pgtest.Pool(t, url)
	setup := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	setup.Now = clock.Now
	id := startRuns(t, setup, 1)[0]
	clock.Advance(16 * time.Minute)
	a, b := replica(t, url, clock, "a", nil), replica(t, url, clock, "b", nil)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM run_snapshots WHERE run_id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	type sweep struct {
		res reaper.SweepResult
		err error
	}
	first := make(chan sweep, 1)
	go func() { res, err := a.Sweep(ctx); first <- sweep{res, err} }()
	waitForLockWaiter(t, pool)
	if res, err := b.Sweep(ctx); err != nil || !res.Skipped || res.Reaped != 0 {
		t.Fatalf("replica b's sweep while a sweeps = %+v %v; want skipped", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if s := <-first; s.err != nil || s.res.Skipped || s.res.Reaped != 1 {
		t.Fatalf("replica a's sweep = %+v %v; want the run reaped", s.res, s.err)
	}
	if res, err := b.Sweep(ctx); err != nil || res.Skipped || res.Reaped != 0 {
		t.Fatalf("replica b's sweep after a's = %+v %v; want a sweep (the lock free) with nothing left", res, err)
	}
	var stale int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = 'RunStaleFailed' AND stream_id = $1`, id).Scan(&stale); err != nil || stale != 1 {
		t.Fatalf("%d RunStaleFailed (%v); want the run reaped exactly once", stale, err)
	}
}

func waitForLockWaiter(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session waits for the run's row after 10s")
		}
	}
}

// failUnlock is a tracer under which the advisory unlock fails once (its
// context already ended) while the session, and so the lock, lives on.
type failUnlock struct{ armed atomic.Bool }

func (f *failUnlock) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "pg_advisory_unlock") && f.armed.CompareAndSwap(true, false) {
		ended, cancel := context.WithCancel(ctx)
		cancel()
		return ended
	}
	return ctx
}

func (f *failUnlock) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// An unlock that fails leaves the lock with its session: the reaper must not
// give that connection back to its pool, or every later sweep of every
// replica would skip for as long as the connection lives.
func TestFailedUnlockDiscardsTheConnection(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	url := pgtest.URL(t)
	f := &failUnlock{}
	f.armed.Store(true)
	a, b := replica(t, url, clock, "a", f), replica(t, url, clock, "b", nil)
	if res, err := a.Sweep(ctx); err != nil || res.Skipped {
		t.Fatalf("replica a's sweep = %+v %v", res, err)
	}
	if f.armed.Load() {
		t.Fatal("the unlock did not run")
	}
	// The discarded session ends asynchronously: wait for the lock to go.
	var res reaper.SweepResult
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if res, err = b.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if !res.Skipped || time.Now().After(deadline) {
			break
		}
	}
	if res.Skipped {
		t.Fatal("replica b still skips 10s after a's unlock failed: a's pooled connection holds the lock")
	}
}
