package runs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

func newRunner(t *testing.T) (*runs.Runner, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(t0)
	rn := runs.NewRunner(eventstore.New(pgtest.NewDB(t)), domain.DefaultPolicy())
	rn.Now = clock.Now
	return rn, clock
}

func heartbeat(n int) []eventstore.NewEvent {
	return []eventstore.NewEvent{{ID: uuid.New(), Event: domain.Heartbeat{CompletedCalls: n, OccurredAt: t0.Add(time.Duration(n) * time.Second)}}}
}

func TestConcurrentStartsOneBusinessExactlyOneSucceeds(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	const n = 20
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		ok     []uuid.UUID
		others []uuid.UUID
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := rn.Start(ctx, domain.StartRun{RunID: uuid.New(), BusinessID: "biz", WorkerID: fmt.Sprint("w", i), TotalCalls: 5}, eventstore.Metadata{})
			mu.Lock()
			defer mu.Unlock()
			var active *domain.ActiveRunExistsError
			switch {
			case err == nil:
				ok = append(ok, res.Run.ID)
			case errors.As(err, &active):
				others = append(others, active.RunID)
			default:
				t.Errorf("start: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(ok) != 1 || len(others) != n-1 {
		t.Fatalf("succeeded=%d refused=%d, want 1 and %d", len(ok), len(others), n-1)
	}
	for _, id := range others {
		if id != ok[0] {
			t.Fatalf("refusal named run %s, want the winner %s", id, ok[0])
		}
	}
	var count int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = 'RunStarted'`).Scan(&count); err != nil || count != 1 {
		t.Fatalf("RunStarted in log = %d (%v), want 1", count, err)
	}
}

func TestStartWhilePreviousRunSilentEndsItAsStale(t *testing.T) {
	ctx := context.Background()
	rn, clock := newRunner(t)
	first := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: first, BusinessID: "biz", WorkerID: "w", TotalCalls: 10}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Minute)
	_, err := rn.Start(ctx, domain.StartRun{RunID: uuid.New(), BusinessID: "biz", WorkerID: "w", TotalCalls: 10}, eventstore.Metadata{})
	var active *domain.ActiveRunExistsError
	if !errors.As(err, &active) || active.RunID != first {
		t.Fatalf("start beside a live run: %v, want ActiveRunExistsError(%s)", err, first)
	}
	clock.Advance(6 * time.Minute)
	second := uuid.New()
	res, err := rn.Start(ctx, domain.StartRun{RunID: second, BusinessID: "biz", WorkerID: "w", TotalCalls: 10}, eventstore.Metadata{})
	if err != nil || res.Run.ID != second || res.Run.Status != domain.StatusRunning {
		t.Fatalf("start after silence: %+v %v", res.Run, err)
	}
	old, _ := rn.Store.Load(ctx, first)
	if old.Status != domain.StatusFailed || old.EndReason != domain.EndStale || old.AbandonedCalls != 10 {
		t.Fatalf("previous run = %s/%s abandoned %d, want failed/stale 10", old.Status, old.EndReason, old.AbandonedCalls)
	}
}

func TestExecuteScopesToBusinessAndRefusesEndedRuns(t *testing.T) {
	ctx := context.Background()
	rn, _ := newRunner(t)
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "a", WorkerID: "w", TotalCalls: 3}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rn.Execute(ctx, "b", run, domain.RequestCancel{}, eventstore.Metadata{}); !errors.Is(err, domain.ErrRunNotFound) {
		t.Fatalf("cancel from another business: %v, want ErrRunNotFound", err)
	}
	if _, err := rn.Execute(ctx, "a", run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 3}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	_, err := rn.Execute(ctx, "a", run, domain.RecordHeartbeat{CompletedCalls: 3}, eventstore.Metadata{})
	var ended *domain.RunEndedError
	if !errors.As(err, &ended) || ended.Final.Status != domain.StatusCompleted {
		t.Fatalf("heartbeat on completed run: %v", err)
	}
	// The store itself refuses anything after a terminal event, whatever the caller decided.
	if _, err := rn.Store.Append(ctx, run, 2, heartbeat(3)); !errors.Is(err, domain.ErrRunEnded) {
		t.Fatalf("append after terminal event: %v, want ErrRunEnded", err)
	}
}

func TestHeartbeatsAreCoalesced(t *testing.T) {
	ctx := context.Background()
	rn, clock := newRunner(t)
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "b", WorkerID: "w", TotalCalls: 100}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		clock.Advance(time.Second)
		if _, err := rn.Execute(ctx, "b", run, domain.RecordHeartbeat{CompletedCalls: i}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := rn.Store.ReadStream(ctx, run)
	if len(evs) != 1+4 { // 20 heartbeats at 1/s, one stored every 5s
		t.Fatalf("stream has %d events, want 5", len(evs))
	}
}

// Two replicas (two Runners, two caches) on one database: what one does, the
// other's next answer reflects, even when it has nothing to write.
func TestReplicaCachesNeverAnswerStale(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	url := pgtest.URL(t)
	a := runs.NewRunner(eventstore.New(pgtest.Pool(t, url)), domain.DefaultPolicy())
	b := runs.NewRunner(eventstore.New(pgtest.Pool(t, url)), domain.DefaultPolicy())
	a.Now, b.Now = clock.Now, clock.Now
	run := uuid.New()
	if _, err := a.Start(ctx, domain.StartRun{RunID: run, BusinessID: "biz", WorkerID: "w", TotalCalls: 10}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Second)
	if _, err := a.Execute(ctx, "biz", run, domain.RecordHeartbeat{CompletedCalls: 1}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	// Replica B takes the cancel; A's next heartbeat would be coalesced, yet must carry it.
	if _, err := b.Execute(ctx, "biz", run, domain.RequestCancel{RequestedBy: "user"}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	res, err := a.Execute(ctx, "biz", run, domain.RecordHeartbeat{CompletedCalls: 2}, eventstore.Metadata{})
	if err != nil || !res.Run.CancelRequested {
		t.Fatalf("A's heartbeat after B's cancel: cancel_requested=%v, %v", res.Run.CancelRequested, err)
	}
	// B stores a heartbeat; A's write from its older state must not land on top of it.
	clock.Advance(6 * time.Second)
	if _, err := b.Execute(ctx, "biz", run, domain.RecordHeartbeat{CompletedCalls: 5}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Second)
	_, err = a.Execute(ctx, "biz", run, domain.RecordHeartbeat{CompletedCalls: 4}, eventstore.Metadata{})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Fields[0].Field != "completed_calls" {
		t.Fatalf("A's heartbeat going backwards behind B's: %v, want a validation error", err)
	}
	events, _ := a.Store.ReadStream(ctx, run)
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("stream versions broken at %d: %+v", i, e)
		}
	}
	// B completes; A learns it from the log, not from its cache.
	if _, err := b.Execute(ctx, "biz", run, domain.CompleteRun{Outcome: domain.OutcomeCancelled, CompletedCalls: 5}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Second)
	if _, err := a.Execute(ctx, "biz", run, domain.RecordHeartbeat{CompletedCalls: 6}, eventstore.Metadata{}); !errors.Is(err, domain.ErrRunEnded) {
		t.Fatalf("A's heartbeat after B completed: %v, want ErrRunEnded", err)
	}
}
