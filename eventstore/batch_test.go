package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

// One batch statement carries good commands beside a conflicting one, a
// duplicate retry, an append on a run that has ended and a start refused by
// the one-open-run rule: each caller gets its own answer, and the log holds
// exactly the events that were acknowledged.
func TestBatchMixedCommandsEachGetTheirOwnAnswer(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	var mu sync.Mutex
	var sizes []int
	store := eventstore.NewWithOptions(pool, eventstore.Options{MaxInFlight: 1, BatchSizes: func(n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	start := func(business string) domain.Run {
		t.Helper()
		id := uuid.New()
		res, err := store.Append(ctx, id, 0, started(id, business))
		if err != nil {
			t.Fatal(err)
		}
		return res.Run
	}
	good1, good2, moved, ended, blocker := start("g1"), start("g2"), start("m"), start("e"), start("z")
	// moved: another writer appended, so an append from its old state conflicts.
	if _, err := store.AppendTo(ctx, moved.ID, moved, heartbeat(1)); err != nil {
		t.Fatal(err)
	}
	// ended: completed, so an append from its running state must be refused.
	if _, err := store.AppendTo(ctx, ended.ID, ended, []eventstore.NewEvent{{ID: uuid.New(),
		Event: domain.RunCompleted{Outcome: domain.OutcomeCompleted, OccurredAt: t0}}}); err != nil {
		t.Fatal(err)
	}
	// dup: an append that committed, retried with the same event ids.
	dupBase := start("d")
	dupEvents := heartbeat(2)
	first, err := store.AppendTo(ctx, dupBase.ID, dupBase, dupEvents)
	if err != nil {
		t.Fatal(err)
	}
	before := countEvents(t, store)

	// Hold the blocker's snapshot row: its append is the statement in
	// flight, and everything submitted meanwhile queues for one batch.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM run_snapshots WHERE run_id = $1 FOR UPDATE`, blocker.ID); err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan error, 1)
	go func() { _, err := store.AppendTo(ctx, blocker.ID, blocker, heartbeat(3)); inFlight <- err }()
	waitLockWaiters(t, pool, 1)

	type outcome struct {
		res eventstore.AppendResult
		err error
	}
	submit := func(run domain.Run, events []eventstore.NewEvent) <-chan outcome {
		ch := make(chan outcome, 1)
		go func() { res, err := store.AppendTo(ctx, run.ID, run, events); ch <- outcome{res, err} }()
		return ch
	}
	newRun := uuid.New()
	results := map[string]<-chan outcome{
		"good1":    submit(good1, heartbeat(4)),
		"good2":    submit(good2, heartbeat(5)),
		"conflict": submit(moved, heartbeat(6)),
		"ended":    submit(ended, heartbeat(7)),
		"dup":      submit(dupBase, dupEvents),
		"refused":  submit(domain.Run{}, started(newRun, "g1")), // g1 has an open run
	}
	for deadline := time.Now().Add(10 * time.Second); eventstore.QueuedAppends(store) < 6; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued behind the statement in flight, want 6", eventstore.QueuedAppends(store))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-inFlight; err != nil {
		t.Fatal(err)
	}
	got := map[string]outcome{}
	for name, ch := range results {
		got[name] = <-ch
	}
	for _, name := range []string{"good1", "good2"} {
		if got[name].err != nil || got[name].res.Run.Version != 2 || got[name].res.LastPosition == 0 {
			t.Errorf("%s = %+v %v, want appended at version 2", name, got[name].res, got[name].err)
		}
	}
	if !errors.Is(got["conflict"].err, eventstore.ErrVersionConflict) {
		t.Errorf("conflict = %v, want a version conflict", got["conflict"].err)
	}
	if !errors.Is(got["ended"].err, eventstore.ErrVersionConflict) { // the Runner reloads and finds it ended
		t.Errorf("ended = %v, want a version conflict (nothing follows a terminal event)", got["ended"].err)
	}
	if got["dup"].err != nil || !got["dup"].res.Duplicate || got["dup"].res.LastPosition != first.LastPosition {
		t.Errorf("dup = %+v %v, want the first append's result", got["dup"].res, got["dup"].err)
	}
	var active *domain.ActiveRunExistsError
	if !errors.As(got["refused"].err, &active) || active.RunID != good1.ID {
		t.Errorf("refused start = %v, want active_run_exists naming %s", got["refused"].err, good1.ID)
	}
	if after := countEvents(t, store); after != before+3 { // blocker, good1, good2
		t.Errorf("log grew by %d events, want 3 (the acknowledged ones)", after-before)
	}
	mu.Lock()
	defer mu.Unlock()
	batched := false
	for _, n := range sizes {
		batched = batched || n == 6
	}
	if !batched {
		t.Errorf("batch sizes %v: the six were not appended in one statement", sizes)
	}
}

// waitLockWaiters waits until n sessions wait for a lock.
func waitLockWaiters(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock after 10s, want %d", waiting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countEvents(t *testing.T, store *eventstore.Store) int {
	t.Helper()
	var n int
	if err := eventstore.PoolOf(store).QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// 64 workers heartbeat 200 times each on 64 runs through group commit:
// every acknowledged heartbeat is stored once, and every stream's versions
// have no gap.
func TestConcurrentHeartbeatsThroughBatchesAreStoredOnce(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	var mu sync.Mutex
	largest := 0
	store := eventstore.NewWithOptions(pool, eventstore.Options{BatchSizes: func(n int) {
		mu.Lock()
		largest = max(largest, n)
		mu.Unlock()
	}})
	rn := runs.NewRunner(store, domain.Policy{StaleAfter: time.Hour}) // no coalescing: every heartbeat is stored
	const runs, beats = 64, 200
	ids := make([]uuid.UUID, runs)
	for i := range ids {
		ids[i] = uuid.New()
		if _, err := rn.Start(ctx, domain.StartRun{RunID: ids[i], BusinessID: fmt.Sprintf("b%02d", i), WorkerID: "w", TotalCalls: beats}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	acked := make([][]int64, runs) // versions acknowledged, per run
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= beats; n++ {
				res, err := rn.Execute(ctx, fmt.Sprintf("b%02d", i), ids[i], domain.RecordHeartbeat{CompletedCalls: n}, eventstore.Metadata{})
				if err != nil || len(res.Events) != 1 {
					t.Errorf("run %d heartbeat %d: %v (%d events)", i, n, err, len(res.Events))
					return
				}
				acked[i] = append(acked[i], res.Run.Version)
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		var count, maxVersion, completedAtMax int64
		err := pool.QueryRow(ctx, `SELECT count(*), max(stream_version),
			(SELECT (data->>'completed_calls')::int FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1)
			FROM events WHERE stream_id = $1`, id).Scan(&count, &maxVersion, &completedAtMax)
		if err != nil {
			t.Fatal(err)
		}
		if count != beats+1 || maxVersion != beats+1 || completedAtMax != beats || len(acked[i]) != beats {
			t.Fatalf("run %d: %d events, max version %d, last count %d, %d acknowledged; want %d gap-free",
				i, count, maxVersion, completedAtMax, len(acked[i]), beats+1)
		}
		for k, v := range acked[i] {
			if v != int64(k+2) {
				t.Fatalf("run %d: heartbeat %d acknowledged at version %d", i, k+1, v)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if largest < 2 {
		t.Fatalf("the largest batch held %d commands: nothing was batched", largest)
	}
	t.Logf("largest batch: %d commands", largest)
}

// With batching off (BatchMax 1) every append is its own statement, and
// they run side by side as before group commit: an append blocked on one
// run's lock does not hold up another run's.
func TestBatchingOffAppendsDoNotWaitForEachOther(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	store := eventstore.NewWithOptions(pool, eventstore.Options{BatchMax: 1})
	a, b := uuid.New(), uuid.New()
	ra, err := store.Append(ctx, a, 0, started(a, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, b, 0, started(b, "b")); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM run_snapshots WHERE run_id = $1 FOR UPDATE`, a); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { _, err := store.AppendTo(ctx, a, ra.Run, heartbeat(1)); blocked <- err }()
	waitLockWaiters(t, pool, 1)

	bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := store.Append(bctx, b, 1, heartbeat(1)); err != nil {
		t.Fatalf("run b's append while run a's is blocked: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatalf("run a's append once the lock was released: %v", err)
	}
}

// reportedDeadline is a caller's context that reports a deadline 1 ms after
// it was made but ends only when the test says: the caller gives up at a
// moment the test chooses (once its append is in a statement), while any
// statement that took its deadline as its own is already cut short.
type reportedDeadline struct {
	context.Context
	at time.Time
}

func (c reportedDeadline) Deadline() (time.Time, bool) { return c.at, true }

// One caller near its deadline cannot cancel the statement it shares: 63
// callers and one with a 1 ms deadline are taken into one statement, the
// impatient one gives up and returns at once while the statement still
// waits, and the 63 are appended by that one statement (no caller appends
// alone).
func TestBatchCallerThatGivesUpDoesNotCancelTheOthers(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	var mu sync.Mutex
	var sizes []int
	var statements int // committed statements: one per batch or lone append
	store := eventstore.NewWithOptions(pool, eventstore.Options{MaxInFlight: 1,
		BatchSizes:  func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() },
		OnCommitted: func(int64) { mu.Lock(); statements++; mu.Unlock() }})
	const patient = 63
	runs := make([]domain.Run, patient+2) // the 63, the impatient one, the blocker
	for i := range runs {
		id := uuid.New()
		res, err := store.Append(ctx, id, 0, started(id, fmt.Sprintf("b%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		runs[i] = res.Run
	}
	blocker, impatientRun := runs[patient+1], runs[patient]
	lock := func(id uuid.UUID) pgx.Tx {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		if _, err := tx.Exec(ctx, `SELECT 1 FROM run_snapshots WHERE run_id = $1 FOR UPDATE`, id); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	// The blocker's statement is in flight while the 64 queue; run 0's row
	// then holds their statement once it has taken them all.
	holdBlocker, holdRun0 := lock(blocker.ID), lock(runs[0].ID)
	inFlight := make(chan error, 1)
	go func() { _, err := store.AppendTo(ctx, blocker.ID, blocker, heartbeat(1)); inFlight <- err }()
	waitLockWaiters(t, pool, 1)
	mu.Lock()
	sizes, statements = nil, 0
	mu.Unlock()

	results := make(chan error, patient)
	for i := range patient {
		go func() { _, err := store.AppendTo(ctx, runs[i].ID, runs[i], heartbeat(10+i)); results <- err }()
	}
	giveUp, cancel := context.WithCancel(ctx)
	defer cancel()
	impatient := make(chan error, 1)
	go func() {
		_, err := store.AppendTo(reportedDeadline{giveUp, time.Now().Add(time.Millisecond)}, impatientRun.ID, impatientRun, heartbeat(99))
		impatient <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); eventstore.QueuedAppends(store) < patient+1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", eventstore.QueuedAppends(store), patient+1)
		}
	}
	if err := holdBlocker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-inFlight; err != nil {
		t.Fatal(err)
	}
	waitLockWaiters(t, pool, 1) // the statement of the 64 waits for run 0's row
	cancel()
	select {
	case err := <-impatient:
		if err == nil {
			t.Fatal("the caller that gave up was answered without error before the shared statement ended (appended alone?); want its context's error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller that gave up still waits for the statement after 10s")
	}
	if err := holdRun0.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range patient {
		if err := <-results; err != nil {
			t.Errorf("a patient caller: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 1 || sizes[0] != patient+1 || statements != 2 {
		t.Fatalf("batch statements of sizes %v and %d committed statements; want the 64 in one statement, committed after the blocker's, and no caller alone",
			sizes, statements)
	}
}
