package projections_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startProjector runs the projections until the returned stop is called (or the test ends).
func startProjector(t *testing.T, pool *pgxpool.Pool, opts projections.Options) (stop func()) {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 10 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	subscribed := make(chan struct{})
	opts.OnSubscribed = func() { close(subscribed) }
	p, err := projections.NewProjector(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-subscribed:
	case err := <-done:
		t.Fatalf("projector: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("projector: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitCaughtUp polls until the projections (all when none are named) have
// applied every committed event.
func waitCaughtUp(t testing.TB, pool *pgxpool.Pool, names ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		lags, err := projections.Lags(context.Background(), pool, names)
		if err != nil {
			t.Fatal(err)
		}
		behind := int64(0)
		for _, l := range lags {
			behind += l.Events
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections still behind: %+v", lags)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func assertVerified(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	diffs, err := projections.Verify(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("difference: %s", d)
	}
}

// workload drives a realistic mix of commands over several businesses.
type workload struct {
	rn    *runs.Runner
	now   atomic.Int64 // unix nanos of the fake server clock
	rng   *rand.Rand
	runs  map[string]uuid.UUID
	calls map[uuid.UUID]int
}

func newWorkload(pool *pgxpool.Pool, seed int64) *workload {
	w := &workload{rng: rand.New(rand.NewSource(seed)), runs: map[string]uuid.UUID{}, calls: map[uuid.UUID]int{}}
	w.now.Store(time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC).UnixNano())
	w.rn = runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	w.rn.Now = func() time.Time { return time.Unix(0, w.now.Load()).UTC() }
	return w
}

// seeded returns a fresh database holding steps commands of the workload with that seed.
func seeded(t testing.TB, seed int64, steps int) (*pgxpool.Pool, *workload) {
	t.Helper()
	pool := pgtest.NewDB(t)
	w := newWorkload(pool, seed)
	for i := 0; i < steps; i++ {
		w.mustStep(context.Background(), t)
	}
	return pool, w
}

// step advances the clock and applies one command to a random business. It
// returns an error for anything but the refusals a random workload meets
// (an ended run, a business that already has an active run).
func (w *workload) step(ctx context.Context) error {
	w.now.Add(int64(time.Duration(1+w.rng.Intn(20)) * time.Second))
	b := fmt.Sprintf("biz-%d", w.rng.Intn(5))
	run, ok := w.runs[b]
	var err error
	switch {
	case !ok || w.rng.Intn(30) == 0:
		run = uuid.New()
		_, err = w.rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: b, WorkerID: "w", TotalCalls: 50}, eventstore.Metadata{})
		if err == nil {
			w.runs[b] = run
		}
	case w.rng.Intn(15) == 0:
		_, err = w.rn.Execute(ctx, b, run, domain.RequestCancel{Reason: "test"}, eventstore.Metadata{})
	case w.rng.Intn(20) == 0:
		_, err = w.rn.Execute(ctx, b, run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: w.calls[run]}, eventstore.Metadata{})
	case w.rng.Intn(40) == 0:
		w.now.Add(int64(20 * time.Minute)) // let everything go silent
	default:
		if w.calls[run] < 50 {
			w.calls[run]++
		}
		_, err = w.rn.Execute(ctx, b, run, domain.RecordHeartbeat{CompletedCalls: w.calls[run]}, eventstore.Metadata{})
	}
	var active *domain.ActiveRunExistsError
	if err != nil && !errors.Is(err, domain.ErrRunEnded) && !errors.As(err, &active) {
		return fmt.Errorf("workload: %w", err)
	}
	return nil
}

// mustStep is step for the test's own goroutine.
func (w *workload) mustStep(ctx context.Context, t testing.TB) {
	t.Helper()
	if err := w.step(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestOutOfOrderCommitsAreNeverSkipped(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	store := eventstore.New(pool)

	// Transaction A takes a position and stays open.
	txA, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	runA, runB := uuid.New(), uuid.New()
	var posA int64
	var xidA int64
	if err := txA.QueryRow(ctx, `INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, occurred_at)
		VALUES ($1, $2, 1, 'a', 'RunStarted', 1, $3, now()) RETURNING position, transaction_id::text::bigint`,
		uuid.New(), runA, fmt.Sprintf(`{"run_id":%q,"business_id":"a","worker_id":"w","total_calls":3,"occurred_at":"2026-11-28T09:00:00Z"}`, runA)).
		Scan(&posA, &xidA); err != nil {
		t.Fatal(err)
	}
	// Transaction B takes a later position and commits first.
	res, err := store.Append(ctx, runB, 0, []eventstore.NewEvent{{ID: uuid.New(), Event: domain.RunStarted{
		RunID: runB, BusinessID: "b", WorkerID: "w", TotalCalls: 3, OccurredAt: time.Now().UTC()}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LastPosition <= posA {
		t.Fatalf("B's position %d is not after A's %d", res.LastPosition, posA)
	}

	metrics := projections.NewMetrics(prometheus.NewRegistry())
	startProjector(t, pool, projections.Options{Metrics: metrics})
	// While A is open, every group must ask for events (and find nothing it
	// may apply) several times, and its offset must never pass A's event.
	emptyPolls := func() float64 {
		return testutil.ToFloat64(metrics.Queries.WithLabelValues(projections.Runs, "empty")) +
			testutil.ToFloat64(metrics.Queries.WithLabelValues(projections.ActiveRuns, "empty"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for emptyPolls() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the projector asked %v times in 10s, want 10", emptyPolls())
		}
		rows, err := pool.Query(ctx, `SELECT consumer_group, last_processed_transaction_id::text::bigint, offset_acked FROM projection_offsets`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var g string
			var xid, off int64
			if err := rows.Scan(&g, &xid, &off); err != nil {
				t.Fatal(err)
			}
			if xid > xidA || (xid == xidA && off >= posA) {
				t.Fatalf("%s offset (%d, %d) passed A's uncommitted event (%d, %d)", g, xid, off, xidA, posA)
			}
		}
		rows.Close()
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok, _ := projections.GetRun(ctx, pool, "b", runB); ok {
		t.Fatalf("B's event was applied before A's earlier transaction finished")
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, pool)
	for _, c := range []struct {
		b   string
		run uuid.UUID
	}{{"a", runA}, {"b", runB}} {
		if _, ok, err := projections.GetRun(ctx, pool, c.b, c.run); !ok || err != nil {
			t.Fatalf("run %s of %s not projected (%v)", c.run, c.b, err)
		}
		if open, ok, err := projections.GetOpenRun(ctx, pool, c.b); !ok || err != nil || open.ID != c.run {
			t.Fatalf("active run of %s = %v %v %v", c.b, open.ID, ok, err)
		}
	}
}

func TestRedeliveryChangesNothing(t *testing.T) {
	ctx := context.Background()
	pool, _ := seeded(t, 1, 300)
	stop := startProjector(t, pool, projections.Options{})
	waitCaughtUp(t, pool)
	stop()
	before := dump(t, pool)
	if len(before) == 0 {
		t.Fatal("nothing projected")
	}
	// Rewind both consumer groups: every event is delivered a second time.
	if _, err := pool.Exec(ctx, `UPDATE projection_offsets SET offset_acked = 0, last_processed_transaction_id = '0'`); err != nil {
		t.Fatal(err)
	}
	startProjector(t, pool, projections.Options{})
	waitCaughtUp(t, pool)
	after := dump(t, pool)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("second delivery changed the read models:\nbefore %v\nafter  %v", before, after)
	}
	assertVerified(t, pool)
}

// The projector process (serve) is killed with SIGKILL in the middle of a
// batch, five times, while it works through a backlog: each time a batch
// transaction is open in PostgreSQL when the process dies. What the next
// process builds equals a rebuild from the log.
func TestProjectorKilledMidBatchRecovers(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	pool := pgtest.Pool(t, dbURL)
	w := newWorkload(pool, 2)
	for i := 0; i < 1500; i++ {
		w.mustStep(ctx, t)
	}
	// Every read-model write takes a moment, so a batch lasts long enough
	// to be caught open.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.003); RETURN NEW; END $$;
		CREATE TRIGGER slow_runs BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION slow_write();
		CREATE TRIGGER slow_active BEFORE INSERT OR UPDATE ON active_runs FOR EACH ROW EXECUTE FUNCTION slow_write();`); err != nil {
		t.Fatal(err)
	}
	opts := servetest.Options{DatabaseURL: dbURL, Secret: "projections-test-secret-0123456789abcdef",
		Args: []string{"--stale-after", "10000h", "--no-migrate"}}
	srv := servetest.Start(t, opts)
	var offsets []int64
	last := int64(0)
	for i := 0; i < 5; i++ {
		if i > 0 {
			srv.Restart()
		}
		waitOffsetPast(t, pool, last)     // this process committed a batch …
		waitBatchOpen(t, pool, srv.Pid()) // … and is inside the next one
		srv.Kill()
		last = appliedOffset(t, pool)
		offsets = append(offsets, last)
	}
	if _, err := pool.Exec(ctx, `DROP TRIGGER slow_runs ON runs; DROP TRIGGER slow_active ON active_runs`); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	waitCaughtUp(t, pool)
	assertVerified(t, pool)
	t.Logf("runs offset after each kill: %v", offsets)
}

// waitBatchOpen waits until a projector connection of the process is inside
// a transaction that has written read-model rows (so a kill lands mid-batch).
func waitBatchOpen(t *testing.T, pool *pgxpool.Pool, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var open bool
		err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE application_name = 'runledger-projector:' || $1 AND backend_xid IS NOT NULL
			AND state IN ('active', 'idle in transaction') AND query ~ '(runs|active_runs)')`, strconv.Itoa(pid)).Scan(&open)
		if err != nil {
			t.Fatal(err)
		}
		if open {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no projector batch of process %d was seen open within 20s", pid)
}

// waitOffsetPast waits until the runs group has committed past offset.
func waitOffsetPast(t *testing.T, pool *pgxpool.Pool, offset int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for appliedOffset(t, pool) <= offset {
		if time.Now().After(deadline) {
			t.Fatalf("the runs group did not commit past %d within 20s", offset)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// appliedOffset is the runs group's committed offset (0 before any commit).
func appliedOffset(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var off int64
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(max(offset_acked), 0) FROM projection_offsets WHERE consumer_group = 'runs'`).Scan(&off); err != nil {
		t.Fatal(err)
	}
	return off
}

func TestRebuildWhileServing(t *testing.T) {
	ctx := context.Background()
	pool, w := seeded(t, 3, 2000)
	startProjector(t, pool, projections.Options{})
	waitCaughtUp(t, pool)

	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	var reads, writes atomic.Int64
	wg.Add(1)
	go func() { // appends keep coming
		defer wg.Done()
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			if err := w.step(ctx); err != nil {
				t.Error(err) // not Fatal: this is not the test's goroutine
				return
			}
			writes.Add(1)
		}
	}()
	for r := 0; r < 3; r++ { // readers never fail nor see an empty table
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				runs, _, err := projections.ListRuns(ctx, pool, "biz-1", 5, nil)
				if err != nil || len(runs) == 0 {
					t.Errorf("read during rebuild: %d runs, %v", len(runs), err)
					return
				}
				if _, _, err := projections.GetOpenRun(ctx, pool, "biz-2"); err != nil {
					t.Errorf("active read during rebuild: %v", err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 2; i++ {
		stats, err := projections.Rebuild(ctx, pool, projections.RebuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(stats) != 2 || stats[0].Events == 0 {
			t.Fatalf("rebuild stats %+v", stats)
		}
	}
	close(stopLoad)
	wg.Wait()
	if reads.Load() == 0 || writes.Load() == 0 {
		t.Fatalf("reads=%d writes=%d during rebuild", reads.Load(), writes.Load())
	}
	waitCaughtUp(t, pool)
	assertVerified(t, pool)
	var idx int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE indexname IN ('runs_pkey', 'runs_business_started', 'active_runs_pkey')`).Scan(&idx); err != nil || idx != 3 {
		t.Fatalf("indexes after swap: %d (%v), want the live names back", idx, err)
	}
}

func TestVerifyReportsDifferences(t *testing.T) {
	ctx := context.Background()
	pool, _ := seeded(t, 4, 100)
	startProjector(t, pool, projections.Options{})
	waitCaughtUp(t, pool)
	assertVerified(t, pool)
	if _, err := pool.Exec(ctx, `UPDATE runs SET completed_calls = completed_calls + 1 WHERE run_id = (SELECT run_id FROM runs LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	diffs, err := projections.Verify(ctx, pool)
	if err != nil || len(diffs) != 1 || diffs[0].Projection != projections.Runs || diffs[0].Live == nil || diffs[0].Rebuilt == nil {
		t.Fatalf("verify after tampering = %v, %v; want one runs difference", diffs, err)
	}
}

func TestPoisonEventIsRecordedAndSkipped(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	// An event whose stream starts at version 2 can never apply: a gap.
	if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, occurred_at)
		VALUES ($1, $2, 2, 'x', 'Heartbeat', 1, '{"completed_calls":1,"failed_calls":0,"occurred_at":"2026-11-28T09:00:00Z"}', now())`,
		uuid.New(), uuid.New()); err != nil {
		t.Fatal(err)
	}
	w := newWorkload(pool, 5)
	for i := 0; i < 20; i++ {
		w.mustStep(ctx, t)
	}
	startProjector(t, pool, projections.Options{Projections: []string{projections.Runs}, MaxRetries: 1})
	waitCaughtUp(t, pool, projections.Runs) // not blocked by the poison event
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_poison WHERE consumer_group = 'runs'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("poison rows = %d (%v), want 1", n, err)
	}
}

// dump returns both read models as comparable text, ordered.
func dump(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"runs", "active_runs"} {
		rows, err := pool.Query(context.Background(), `SELECT t::text FROM `+table+` t ORDER BY run_id`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, table+":"+s)
		}
		rows.Close()
	}
	return out
}

// Two rebuilds at once would drop each other's shadow tables: the second one
// is refused with ErrRebuildInProgress, the first completes, and the read
// models stay right.
func TestConcurrentRebuildsAreSerialised(t *testing.T) {
	ctx := context.Background()
	pool, _ := seeded(t, 6, 400)
	startProjector(t, pool, projections.Options{})
	waitCaughtUp(t, pool)
	const n = 4
	errs := make(chan error, n)
	var ready sync.WaitGroup
	ready.Add(n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			ready.Done()
			<-start
			_, err := projections.Rebuild(ctx, pool, projections.RebuildOptions{})
			errs <- err
		}()
	}
	ready.Wait()
	close(start)
	var ok, refused int
	for i := 0; i < n; i++ {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, projections.ErrRebuildInProgress):
			refused++
		default:
			t.Errorf("rebuild: %v", err)
		}
	}
	if ok == 0 || ok+refused != n {
		t.Fatalf("%d rebuilds succeeded, %d refused, want at least one success and the rest refused", ok, refused)
	}
	waitCaughtUp(t, pool)
	assertVerified(t, pool)
}
