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
	if err := eventstore.PoolOf(store).QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&count); err != nil || count != 1 {
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
	if err := eventstore.PoolOf(store).QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&count); err != nil || count != 2 {
		t.Fatalf("events in log = %d (%v), want 2", count, err)
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
		if _, err := eventstore.PoolOf(store).Exec(ctx, sql); err == nil {
			t.Fatalf("%s succeeded on the log", sql)
		}
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
