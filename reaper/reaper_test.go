package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/reaper"
	"github.com/runledger/runledger/runs"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newReaper(t *testing.T, rn *runs.Runner, instance string) *reaper.Reaper {
	t.Helper()
	r, err := reaper.New(reaper.Config{Runner: rn, Interval: time.Second, Logger: quiet, Instance: instance, NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func startRuns(t *testing.T, rn *runs.Runner, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
		if _, err := rn.Start(context.Background(), domain.StartRun{RunID: ids[i], BusinessID: fmt.Sprintf("b%d", i),
			WorkerID: "w", TotalCalls: 10}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestSweepEndsOnlySilentRuns(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	rn := runs.NewRunner(eventstore.New(pgtest.NewDB(t)), domain.DefaultPolicy())
	rn.Now = clock.Now
	ids := startRuns(t, rn, 3)
	clock.Advance(10 * time.Minute)
	if _, err := rn.Execute(ctx, "b1", ids[1], domain.RecordHeartbeat{CompletedCalls: 4}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rn.Execute(ctx, "b2", ids[2], domain.RequestCancel{RequestedBy: "user"}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	r := newReaper(t, rn, "r1")
	clock.Advance(5*time.Minute - time.Second) // b0 and b2 at 14m59s: still alive
	if res, err := r.Sweep(ctx); err != nil || res.Reaped != 0 {
		t.Fatalf("sweep before the TTL: %+v %v", res, err)
	}
	clock.Advance(time.Second) // b0 and b2 exactly at the TTL
	res, err := r.Sweep(ctx)
	if err != nil || res.Reaped != 2 {
		t.Fatalf("sweep at the TTL: %+v %v", res, err)
	}
	want := map[uuid.UUID][2]string{
		ids[0]: {"failed", "stale"},
		ids[1]: {"running", ""},
		ids[2]: {"cancelled", "cancelled"},
	}
	for id, w := range want {
		run, _ := rn.Store.Load(ctx, id)
		if string(run.Status) != w[0] || string(run.EndReason) != w[1] {
			t.Errorf("run %s = %s/%s, want %s/%s", id, run.Status, run.EndReason, w[0], w[1])
		}
	}
	stale, _ := rn.Store.Load(ctx, ids[0])
	if stale.AbandonedCalls != 10 {
		t.Errorf("abandoned = %d, want 10", stale.AbandonedCalls)
	}
}

// A heartbeat and the reaper at the same instant on a run at the TTL
// boundary: one consistent outcome, never anything after a terminal event.
func TestHeartbeatVersusReaperRace(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	pool := pgtest.NewDB(t)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	rn.Now = clock.Now
	const n = 200
	ids := startRuns(t, rn, n)
	clock.Advance(15 * time.Minute) // every run exactly at the boundary
	r := newReaper(t, rn, "r1")

	hbErr := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := r.Sweep(ctx); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		for i, id := range ids {
			_, hbErr[i] = rn.Execute(ctx, fmt.Sprintf("b%d", i), id, domain.RecordHeartbeat{CompletedCalls: 1}, eventstore.Metadata{})
		}
	}()
	wg.Wait()
	var heartbeatWon, reaperWon int
	for i, id := range ids {
		events, err := rn.Store.ReadStream(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range events[:len(events)-1] {
			if domain.Terminal(e.Event) {
				t.Fatalf("run %d: %s at %d is followed by %s", i, e.Type, j, events[j+1].Type)
			}
		}
		last := events[len(events)-1].Type
		run, _ := rn.Store.Load(ctx, id)
		switch {
		case hbErr[i] == nil && last == domain.TypeHeartbeat && run.Status == domain.StatusRunning:
			heartbeatWon++
		case errors.Is(hbErr[i], domain.ErrRunEnded) && last == domain.TypeRunStaleFailed && run.EndReason == domain.EndStale:
			reaperWon++
		default:
			t.Fatalf("run %d: inconsistent outcome: heartbeat err %v, last event %s, status %s/%s", i, hbErr[i], last, run.Status, run.EndReason)
		}
	}
	t.Logf("heartbeat won %d, reaper won %d", heartbeatWon, reaperWon)
	if heartbeatWon+reaperWon != n {
		t.Fatalf("outcomes %d + %d != %d", heartbeatWon, reaperWon, n)
	}
}

// Two reapers on separate pools, no lock, over 1,000 stale runs: exactly
// 1,000 RunStaleFailed and no errors.
func TestTwoReapersNeverDoubleEnd(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	url := pgtest.URL(t)
	poolA := pgtest.Pool(t, url)
	rnA := runs.NewRunner(eventstore.New(poolA), domain.DefaultPolicy())
	rnB := runs.NewRunner(eventstore.New(pgtest.Pool(t, url)), domain.DefaultPolicy())
	rnA.Now, rnB.Now = clock.Now, clock.Now
	const n = 1000
	startRuns(t, rnA, n)
	clock.Advance(16 * time.Minute)
	var (
		wg      sync.WaitGroup
		results [2]reaper.SweepResult
	)
	for i, rn := range []*runs.Runner{rnA, rnB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := newReaper(t, rn, fmt.Sprint("r", i)).Sweep(ctx)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	var stale, distinct int
	if err := poolA.QueryRow(ctx, `SELECT count(*), count(DISTINCT stream_id) FROM events WHERE type = 'RunStaleFailed'`).
		Scan(&stale, &distinct); err != nil {
		t.Fatal(err)
	}
	if stale != n || distinct != n {
		t.Fatalf("RunStaleFailed = %d over %d runs, want %d", stale, distinct, n)
	}
	if results[0].Errors+results[1].Errors != 0 || results[0].Reaped+results[1].Reaped != n {
		t.Fatalf("sweeps = %+v", results)
	}
	t.Logf("reaper A ended %d, B ended %d, lost races %d", results[0].Reaped, results[1].Reaped, results[0].Gone+results[1].Gone)
}

func TestAdvisoryLockLetsOneReplicaSweep(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	pool := pgtest.Pool(t, url)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	holder := pgtest.Pool(t, url)
	conn, err := holder.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(advisory.Reaper)); err != nil {
		t.Fatal(err)
	}
	r, _ := reaper.New(reaper.Config{Runner: rn, Pool: pool, Interval: time.Second, Logger: quiet})
	if res, err := r.Sweep(ctx); err != nil || !res.Skipped {
		t.Fatalf("sweep while another replica holds the lock = %+v %v", res, err)
	}
}
