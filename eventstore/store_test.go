package eventstore_test

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
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

func newRunner(t *testing.T) (*eventstore.Runner, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(t0)
	rn := eventstore.NewRunner(eventstore.New(pgtest.NewDB(t)), domain.DefaultPolicy())
	rn.Now = clock.Now
	return rn, clock
}

func started(runID uuid.UUID, business string) []eventstore.NewEvent {
	return []eventstore.NewEvent{{ID: uuid.New(), Event: domain.RunStarted{RunID: runID, BusinessID: business,
		WorkerID: "w", TotalCalls: 100, OccurredAt: t0}}}
}

func heartbeat(n int) []eventstore.NewEvent {
	return []eventstore.NewEvent{{ID: uuid.New(), Event: domain.Heartbeat{CompletedCalls: n, OccurredAt: t0.Add(time.Duration(n) * time.Second)}}}
}

func TestConcurrentAppendsAtSameVersionExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	store := eventstore.New(pgtest.NewDB(t))
	run := uuid.New()
	if _, err := store.Append(ctx, run, 0, started(run, "b1")); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      int
		conflicts int
		winner    int
	)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := store.Append(ctx, run, 1, heartbeat(i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
				winner = i
			case errors.Is(err, eventstore.ErrVersionConflict):
				conflicts++
			default:
				t.Errorf("append %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("wins=%d conflicts=%d, want 1 and %d", wins, conflicts, n-1)
	}
	evs, err := store.ReadStream(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[1].Version != 2 || evs[1].Event.(domain.Heartbeat).CompletedCalls != winner {
		t.Fatalf("stream = %+v, want start + the winner's heartbeat %d", evs, winner)
	}
	state, _ := store.Load(ctx, run)
	if state.Version != 2 || state.CompletedCalls != winner {
		t.Fatalf("snapshot = v%d completed %d", state.Version, state.CompletedCalls)
	}
}

func TestRetriedAppendWithSameEventIDsIsStoredOnce(t *testing.T) {
	ctx := context.Background()
	store := eventstore.New(pgtest.NewDB(t))
	run := uuid.New()
	batch := started(run, "b1")
	first, err := store.Append(ctx, run, 0, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		again, err := store.Append(ctx, run, 0, batch)
		if err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		if !again.Duplicate || again.LastPosition != first.LastPosition || again.Run.Version != 1 {
			t.Fatalf("retry %d = %+v, want duplicate of %+v", i, again, first)
		}
	}
	var count int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&count); err != nil || count != 1 {
		t.Fatalf("events in log = %d (%v), want 1", count, err)
	}
	// The same ids at a later version are a retry too, not a second copy.
	hb := heartbeat(1)
	if _, err := store.Append(ctx, run, 1, hb); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, run, 1, hb); err != nil {
		t.Fatalf("retried heartbeat: %v", err)
	}
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&count); err != nil || count != 2 {
		t.Fatalf("events in log = %d (%v), want 2", count, err)
	}
}

func TestConcurrentStartsOneBusinessExactlyOneSucceeds(t *testing.T) {
	ctx := context.Background()
	rn, _ := newRunner(t)
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
	if err := rn.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE type = 'RunStarted'`).Scan(&count); err != nil || count != 1 {
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

func TestReadBusinessReturnsOnlyThatBusinessInOrder(t *testing.T) {
	ctx := context.Background()
	rn, clock := newRunner(t)
	want := map[string][]string{}
	for round := 0; round < 3; round++ {
		for _, b := range []string{"a", "b", "c"} {
			run := uuid.New()
			if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: b, WorkerID: "w", TotalCalls: 2}, eventstore.Metadata{Actor: "worker:w"}); err != nil {
				t.Fatal(err)
			}
			clock.Advance(6 * time.Second)
			if _, err := rn.Execute(ctx, b, run, domain.RecordHeartbeat{CompletedCalls: 1}, eventstore.Metadata{}); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Second)
			if _, err := rn.Execute(ctx, b, run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 2}, eventstore.Metadata{}); err != nil {
				t.Fatal(err)
			}
			want[b] = append(want[b], run.String()+"/RunStarted", run.String()+"/Heartbeat", run.String()+"/RunCompleted")
		}
	}
	evs, err := rn.Store.ReadBusiness(ctx, eventstore.BusinessQuery{BusinessID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, e := range evs {
		if e.BusinessID != "b" {
			t.Fatalf("event of business %s in b's read", e.BusinessID)
		}
		if i > 0 && (e.OccurredAt.Before(evs[i-1].OccurredAt) || e.Position <= evs[i-1].Position) {
			t.Fatalf("events out of order at %d", i)
		}
		got = append(got, e.StreamID.String()+"/"+e.Type)
	}
	if fmt.Sprint(got) != fmt.Sprint(want["b"]) {
		t.Fatalf("b's events:\n%v\nwant\n%v", got, want["b"])
	}
	// A time range cuts the timeline; Limit and After page it.
	ranged, err := rn.Store.ReadBusiness(ctx, eventstore.BusinessQuery{BusinessID: "b", Since: evs[3].OccurredAt, Until: evs[6].OccurredAt})
	if err != nil || len(ranged) != 3 || ranged[0].Position != evs[3].Position {
		t.Fatalf("ranged read = %d events (%v)", len(ranged), err)
	}
	page, err := rn.Store.ReadBusiness(ctx, eventstore.BusinessQuery{BusinessID: "b", Limit: 2,
		After: &eventstore.Cursor{OccurredAt: evs[1].OccurredAt, Position: evs[1].Position}})
	if err != nil || len(page) != 2 || page[0].Position != evs[2].Position {
		t.Fatalf("page = %+v (%v)", page, err)
	}
}

func TestLogIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	store := eventstore.New(pgtest.NewDB(t))
	run := uuid.New()
	if _, err := store.Append(ctx, run, 0, started(run, "b")); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{`UPDATE events SET type = 'x'`, `DELETE FROM events`, `TRUNCATE events`} {
		if _, err := store.Pool().Exec(ctx, sql); err == nil {
			t.Fatalf("%s succeeded on the log", sql)
		}
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
	a := eventstore.NewRunner(eventstore.New(pgtest.Pool(t, url)), domain.DefaultPolicy())
	b := eventstore.NewRunner(eventstore.New(pgtest.Pool(t, url)), domain.DefaultPolicy())
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

func TestReadAllPagesTheWholeLogInOrder(t *testing.T) {
	ctx := context.Background()
	rn, clock := newRunner(t)
	for i := 0; i < 7; i++ {
		run := uuid.New()
		b := fmt.Sprint("b", i)
		if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: b, WorkerID: "w", TotalCalls: 1}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		if _, err := rn.Execute(ctx, b, run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 1}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		after int64
		seen  []eventstore.Recorded
	)
	for pages := 0; ; pages++ {
		batch, err := rn.Store.ReadAll(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			if pages != 5 { // 14 events in pages of 3
				t.Fatalf("read %d pages, want 5", pages)
			}
			break
		}
		seen = append(seen, batch...)
		after = batch[len(batch)-1].Position
	}
	if len(seen) != 14 {
		t.Fatalf("read %d events, want 14", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Position <= seen[i-1].Position || seen[i].Event == nil {
			t.Fatalf("event %d out of order or undecoded: %+v", i, seen[i])
		}
	}
}
