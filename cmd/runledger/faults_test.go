package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pglocal"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
	"github.com/runledger/runledger/projections"
)

// heartbeater sends a run's heartbeats through one replica until stopped,
// and records every answer.
type heartbeater struct {
	c         *apiClient
	business  string
	run       string
	token     string
	interval  time.Duration
	completed int

	mu    sync.Mutex
	acked []answer // 200 answers
	all   tally
}

func (h *heartbeater) loop(ctx context.Context, ok func(answer) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.interval):
		}
		h.completed++
		a := h.c.do("POST", "/v1/businesses/"+h.business+"/runs/"+h.run+"/heartbeat", h.token,
			map[string]any{"completed_calls": h.completed, "failed_calls": 0})
		h.all.add("heartbeat", a, ok)
		if a.status == 200 {
			h.mu.Lock()
			h.acked = append(h.acked, a)
			h.mu.Unlock()
		}
	}
}

func startRun(t *testing.T, c *apiClient, business string, total int) string {
	t.Helper()
	a := c.do("POST", "/v1/businesses/"+business+"/runs", c.token(business, api.RoleWorker),
		map[string]any{"total_calls": total, "worker_id": "w-" + business})
	if a.status != 201 {
		t.Fatalf("start %s: %d %v %v", business, a.status, a.body, a.err)
	}
	return a.str("run_id")
}

// A replica frozen (SIGSTOP) inside a projector transaction for 20 s cannot
// freeze the other: PostgreSQL ends the frozen batch (idle in transaction),
// the other replica takes the consumer groups over, its read models stay
// within the lag bound, and a run heartbeating through it is answered 200
// active the whole time.
func TestFrozenReplicaCannotFreezeTheOther(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.IsolatedURL(t) // it holds transactions open: keep them off the shared cluster
	args := []string{"--stale-after", "12s", "--heartbeat-min-interval", "100ms", "--reap-interval", "1s"}
	a := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: testSecret, Args: args})
	b := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: testSecret, Args: args})
	pool := pgtest.Pool(t, dbURL)
	cb := newAPIClient(t, b.URL)
	run := startRun(t, cb, "acme", 1_000_000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hb := &heartbeater{c: cb, business: "acme", run: run, token: cb.token("acme", api.RoleWorker), interval: 150 * time.Millisecond}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); hb.loop(ctx, func(a answer) bool { return a.status == 200 }) }()
	// Load on A too, so that A's projector is busy and holds batches open.
	ca := newAPIClient(t, a.URL)
	for i := 0; i < 3; i++ {
		business := fmt.Sprintf("load-%d", i)
		loadRun := startRun(t, ca, business, 1_000_000)
		h := &heartbeater{c: ca, business: business, run: loadRun, token: ca.token(business, api.RoleWorker), interval: 20 * time.Millisecond}
		wg.Add(1)
		go func() { defer wg.Done(); h.loop(ctx, func(answer) bool { return true }) }()
	}
	user := cb.token("acme", api.RoleUser)
	var last answer
	waitFor(t, 10*time.Second, "the run to be active through B", func() bool {
		last = cb.do("GET", "/v1/businesses/acme/runs/active", user, nil)
		return last.status == 200
	}, func() string { return fmt.Sprintf("last answer %d %v %v", last.status, last.body, last.err) })
	freezeInsideProjectorTx(t, pool, a)
	frozenAt := time.Now()
	defer a.Thaw()

	const bound = 3 * time.Second // min(5s, 12s/4)
	var reads tally
	maxLagAfterTimeouts := 0.0
	for time.Since(frozenAt) < 20*time.Second {
		got := cb.do("GET", "/v1/businesses/acme/runs/active", user, nil)
		reads.add("GET active", got, func(a answer) bool { return a.status == 200 && a.str("run_id") == run && a.body["active"] == true })
		if time.Since(frozenAt) > 3*time.Second { // the frozen batch's timeouts have fired
			lags, err := projections.Lags(context.Background(), pool, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lags {
				maxLagAfterTimeouts = max(maxLagAfterTimeouts, l.Seconds)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("GET active through B while A was frozen: %v; heartbeats: %v; max lag after 3s: %.3fs",
		reads.byStatus, hb.all.byStatus, maxLagAfterTimeouts)
	if len(reads.odd) > 0 || len(hb.all.odd) > 0 {
		t.Fatalf("B did not answer 200 active throughout: reads %v, heartbeats %v", reads.odd, hb.all.odd)
	}
	if maxLagAfterTimeouts >= bound.Seconds() {
		t.Fatalf("B's read models fell %.2fs behind (bound %s) while A was frozen", maxLagAfterTimeouts, bound)
	}
}

// freezeInsideProjectorTx stops srv (SIGSTOP) while one of its projector
// batches is open in PostgreSQL: a test-only trigger makes that process's
// read-model writes slow, the process is frozen while PostgreSQL runs one,
// and the transaction is left open (idle in transaction) behind it, holding
// its consumer group's offset row and the log's visibility horizon.
func freezeInsideProjectorTx(t *testing.T, pool *pgxpool.Pool, srv *servetest.Server) {
	t.Helper()
	app := "runledger-projector:" + strconv.Itoa(srv.Pid())
	ctx := context.Background()
	if _, err := pool.Exec(ctx, fmt.Sprintf(`
		CREATE FUNCTION slow_for_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('application_name') = '%s' THEN PERFORM pg_sleep(0.2); END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER slow_for_frozen BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION slow_for_frozen();`,
		app)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var sleeping bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE application_name = $1 AND backend_xid IS NOT NULL AND wait_event = 'PgSleep')`, app).Scan(&sleeping); err != nil {
			t.Fatal(err)
		}
		if sleeping {
			srv.Freeze()
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no projector write of process %d seen within 20s", srv.Pid())
}

type pgxQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// An ACCESS EXCLUSIVE lock held 30 s on run_snapshots, then on runs: every
// request answers within its deadline (a success or 503, never a hang or a
// reset), the reaper and the projector recover once it is released, and no
// acknowledged heartbeat is missing from the log.
func TestTableLockedEveryRequestAnswersInTime(t *testing.T) {
	if testing.Short() {
		t.Skip("holds two locks for 30 s each")
	}
	t.Parallel()
	dbURL := pgtest.IsolatedURL(t) // it holds transactions open: keep them off the shared cluster
	const deadline = 2 * time.Second
	srv := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: testSecret,
		// The TTL outlasts one lock: the workers cannot heartbeat while
		// run_snapshots is locked, and their runs must still be alive after.
		Args: []string{"--request-timeout", deadline.String(), "--stale-after", "45s", "--heartbeat-min-interval", "100ms", "--reap-interval", "500ms"}})
	pool := pgtest.Pool(t, dbURL)
	c := newAPIClient(t, srv.URL)
	inTime := func(a answer) bool {
		return a.err == nil && (a.status < 300 || a.status == 503) && a.latency <= deadline+1500*time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var hbs []*heartbeater
	var reads tally
	for i := 0; i < 3; i++ {
		business := fmt.Sprintf("b%d", i)
		run := startRun(t, c, business, 1_000_000)
		// Both read models: they are separate consumer groups, and a read of
		// active_runs before it applied the start answers a true 404 (CI:
		// "GET active: Not Found after 2ms" as the loops began).
		waitFor(t, 10*time.Second, "the run to be projected", func() bool {
			user := c.token(business, api.RoleUser)
			return c.do("GET", "/v1/businesses/"+business+"/runs/"+run, user, nil).status == 200 &&
				c.do("GET", "/v1/businesses/"+business+"/runs/active", user, nil).status == 200
		})
		h := &heartbeater{c: c, business: business, run: run, token: c.token(business, api.RoleWorker), interval: 100 * time.Millisecond}
		hbs = append(hbs, h)
		wg.Add(2)
		go func() { defer wg.Done(); h.loop(ctx, inTime) }()
		go func() {
			defer wg.Done()
			user := c.token(business, api.RoleUser)
			for ctx.Err() == nil {
				reads.add("GET active", c.do("GET", "/v1/businesses/"+business+"/runs/active", user, nil), inTime)
				reads.add("GET run", c.do("GET", "/v1/businesses/"+business+"/runs/"+run, user, nil), inTime)
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	// A run whose worker dies just before the first lock: it goes stale
	// during the second, so the reaper must have recovered from the first.
	silent := startRun(t, c, "silent", 10)
	for _, table := range []string{"run_snapshots", "runs"} {
		holdLock(t, dbURL, table, 30*time.Second)
	}
	waitFor(t, 20*time.Second, "the silent run to be reaped", func() bool {
		var ended bool
		err := pool.QueryRow(context.Background(), `SELECT ended FROM run_snapshots WHERE run_id = $1`, silent).Scan(&ended)
		return err == nil && ended
	})
	waitFor(t, 20*time.Second, "the projections to catch up", func() bool {
		lags, err := projections.Lags(context.Background(), pool, nil)
		return err == nil && lags[0].Events == 0 && lags[1].Events == 0
	})
	cancel()
	wg.Wait()
	all := map[int]int{}
	var odd []string
	for _, h := range hbs {
		for s, n := range h.all.byStatus {
			all[s] += n
		}
		odd = append(odd, h.all.odd...)
		assertAckedStored(t, pool, h)
	}
	t.Logf("heartbeats: %v; reads: %v", all, reads.byStatus)
	if len(odd) > 0 || len(reads.odd) > 0 {
		t.Fatalf("answers out of time or wrong: heartbeats %v, reads %v", odd, reads.odd)
	}
	if all[503] == 0 || reads.byStatus[503] == 0 {
		t.Fatal("no request met the lock: the test did not test anything")
	}
}

// holdLock takes an ACCESS EXCLUSIVE lock on table and holds it for d.
func holdLock(t *testing.T, dbURL, table string, d time.Duration) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d) // the fault itself: the lock is held this long
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// assertAckedStored checks that every heartbeat answered 200 with
// recorded:true is in the log with the version and counts it was answered with.
func assertAckedStored(t *testing.T, pool pgxQuerier, h *heartbeater) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	stored := 0
	for _, a := range h.acked {
		if a.body["recorded"] != true {
			continue
		}
		run := a.body["run"].(map[string]any)
		version := int64(run["version"].(float64))
		var completed int
		err := pool.QueryRow(context.Background(), `SELECT (data->>'completed_calls')::int FROM events WHERE stream_id = $1 AND stream_version = $2`,
			h.run, version).Scan(&completed)
		if err != nil || completed != int(run["completed_calls"].(float64)) {
			t.Fatalf("acknowledged heartbeat of run %s v%d not in the log as answered (%v)", h.run, version, err)
		}
		stored++
	}
	if stored == 0 {
		t.Fatalf("run %s: no heartbeat was acknowledged as stored", h.run)
	}
}

// waitFor polls ok until it holds, failing after d with what, and what
// explain (if given) says of the last try.
func waitFor(t *testing.T, d time.Duration, what string, ok func() bool, explain ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			var why string
			for _, e := range explain {
				why += " " + e()
			}
			t.Fatalf("waited %s for %s%s", d, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PostgreSQL stopped for 3 s under load: clients get 503 with Retry-After,
// never 500, the log holds fewer than 20 ERROR lines, and the service works
// again once the database is back.
func TestDatabaseStoppedAnswers503(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pg")
	cluster, err := pglocal.Start(context.Background(), pglocal.Options{Dir: dir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop(context.Background())
	if err := ensureDatabase(context.Background(), cluster.URL("postgres"), "runledger"); err != nil {
		t.Fatal(err)
	}
	srv := servetest.Start(t, servetest.Options{DatabaseURL: cluster.URL("runledger"), Secret: testSecret,
		Args: []string{"--request-timeout", "1s", "--heartbeat-min-interval", "0s", "--stale-after", "1m"}})
	c := newAPIClient(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var answers tally
	var after503 atomic.Int64
	ok := func(a answer) bool {
		if a.status == 503 {
			after503.Add(1)
			return a.header.Get("Retry-After") != ""
		}
		return a.err == nil && a.status < 300
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		business := fmt.Sprintf("b%d", i)
		run := startRun(t, c, business, 1_000_000)
		user := c.token(business, api.RoleUser)
		waitFor(t, 10*time.Second, "the run to be projected", func() bool {
			return c.do("GET", "/v1/businesses/"+business+"/runs/active", user, nil).status == 200
		})
		h := &heartbeater{c: c, business: business, run: run, token: c.token(business, api.RoleWorker), interval: 5 * time.Millisecond}
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.loop(ctx, func(a answer) bool { answers.add("heartbeat", a, ok); return true })
		}()
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				answers.add("GET active", c.do("GET", "/v1/businesses/"+business+"/runs/active", user, nil), ok)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second) // load before the outage
	if err := cluster.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the outage itself
	if _, err := pglocal.Start(context.Background(), pglocal.Options{Dir: dir, Port: cluster.Port, Fast: true}); err != nil {
		t.Fatal(err)
	}
	user := c.token("b0", api.RoleUser)
	waitFor(t, 20*time.Second, "the service to answer again", func() bool {
		return c.do("GET", "/v1/businesses/b0/runs/active", user, nil).status == 200
	})
	cancel()
	wg.Wait()
	errorLines := strings.Count(srv.Logs(), `"level":"ERROR"`)
	t.Logf("answers: %v; ERROR lines in the log: %d", answers.byStatus, errorLines)
	if len(answers.odd) > 0 {
		t.Fatalf("answers other than success or 503 with Retry-After: %v", answers.odd)
	}
	if after503.Load() == 0 {
		t.Fatal("no client saw the outage")
	}
	if errorLines >= 20 {
		t.Fatalf("%d ERROR lines for one outage:\n%s", errorLines, lastLines(srv.Logs(), 30))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Two replicas whose own clocks differ by two minutes judge by the
// database's: a run heartbeating through the slow one with a 3 s TTL is never
// reaped by the fast one, and both answer GET active the same.
func TestReplicasWithSkewedClocksAgree(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	replica := func(skew time.Duration) *service {
		cfg := testConfig(t)
		cfg.DatabaseURL, cfg.StaleAfter, cfg.HeartbeatMinInterval, cfg.ReapInterval = dbURL, 3*time.Second, 100*time.Millisecond, 200*time.Millisecond
		cfg.MaxReadLag, cfg.clockSkew = 750*time.Millisecond, skew
		ctx, cancel := context.WithCancel(context.Background())
		svc, err := newService(ctx, cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return svc
	}
	fast, slow := replica(time.Minute), replica(-time.Minute)
	cf, cs := newAPIClient(t, fast.URL()), newAPIClient(t, slow.URL())
	run := startRun(t, cs, "acme", 1_000_000)
	worker, user := cs.token("acme", api.RoleWorker), cs.token("acme", api.RoleUser)
	for _, c := range []*apiClient{cf, cs} {
		var last answer
		waitFor(t, 10*time.Second, "the run to be projected", func() bool {
			last = c.do("GET", "/v1/businesses/acme/runs/active", user, nil)
			return last.status == 200
		}, func() string { return fmt.Sprintf("last answer %d %v %v", last.status, last.body, last.err) })
	}
	completed := 0
	for start := time.Now(); time.Since(start) < 8*time.Second; {
		completed++
		hb := cs.do("POST", "/v1/businesses/acme/runs/"+run+"/heartbeat", worker, map[string]any{"completed_calls": completed, "failed_calls": 0})
		if hb.status != 200 {
			t.Fatalf("heartbeat through the slow replica: %d %v", hb.status, hb.body)
		}
		time.Sleep(300 * time.Millisecond)
		fromFast, fromSlow := activeAnswer(cf, user), activeAnswer(cs, user)
		if fromFast.status != 200 || fromSlow.status != 200 || fromFast.str("run_id") != run || fromSlow.str("run_id") != run {
			t.Fatalf("GET active: fast %d %v, slow %d %v", fromFast.status, fromFast.body, fromSlow.status, fromSlow.body)
		}
	}
	var stale int
	pool := pgtest.Pool(t, dbURL)
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE type = 'RunStaleFailed'`).Scan(&stale); err != nil || stale != 0 {
		t.Fatalf("%d RunStaleFailed (%v): the fast replica reaped a live run", stale, err)
	}
	if off := fast.clock.Offset(); off > -time.Minute+time.Second || off < -time.Minute-time.Second {
		t.Fatalf("fast replica's measured offset = %s, want about -1m", off)
	}
}

// activeAnswer is GET active's answer from c, asked again while it is
// 503 read_model_behind (at most 5 s): on a loaded machine a read model
// may fall past the test's 750 ms freshness bound, which that guard reports
// truly; the skew test compares answers, not freshness (CI run 3:
// "slow 503 … the active_runs read model is more than 750ms behind").
func activeAnswer(c *apiClient, user string) answer {
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := c.do("GET", "/v1/businesses/acme/runs/active", user, nil)
		if a.status != 503 || a.str("code") != "read_model_behind" || time.Now().After(deadline) {
			return a
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The server killed (SIGKILL) under batched heartbeat load: every heartbeat
// it answered 200 recorded:true is in the log, as answered.
func TestKilledServerLosesNoAcknowledgedHeartbeat(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: testSecret, Args: []string{"--heartbeat-min-interval", "0s"}})
	c := newAPIClient(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hbs []*heartbeater
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		business := fmt.Sprintf("k%02d", i)
		h := &heartbeater{c: c, business: business, run: startRun(t, c, business, 1_000_000), token: c.token(business, api.RoleWorker)}
		hbs = append(hbs, h)
		wg.Add(1)
		go func() { defer wg.Done(); h.loop(ctx, func(answer) bool { return true }) }()
	}
	time.Sleep(2 * time.Second) // load, then the crash
	srv.Kill()
	cancel()
	wg.Wait()
	pool := pgtest.Pool(t, dbURL)
	total := 0
	for _, h := range hbs {
		assertAckedStored(t, pool, h)
		total += len(h.acked)
	}
	t.Logf("%d heartbeats acknowledged before the kill, all in the log", total)
}
