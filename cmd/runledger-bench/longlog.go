package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/longlog"
	"github.com/runledger/runledger/projections"
)

// b11Side is what B11 measured on one database.
type b11Side struct {
	name           string
	events         int64
	startup        time.Duration
	heartbeats     float64 // stored per second
	activeP99      time.Duration
	activeByTurn   []string // p50 / p99 of each turn, for the notes
	lagP99         time.Duration
	bytesPerEvent  float64
	rebuildEPS     float64
	verifyEPS      float64
	seeded, folded time.Duration
	statements     []statementStat

	// While measured: the served process, its database and its runs.
	srv  *served
	pool *pgxpool.Pool
	runs []*httpRun
}

// close stops the side's served process and closes its pool.
func (side *b11Side) close() {
	if side.srv != nil {
		side.srv.stop()
	}
	side.pool.Close()
}

// statementStat is one of the statements B11 follows in pg_stat_statements.
type statementStat struct {
	name   string
	calls  int64
	meanMS float64
	// Per call: rows returned or written, shared buffers found in
	// PostgreSQL's cache and read from outside it, WAL full-page images
	// and WAL bytes: what tells a long log's cost from an empty one's.
	rows, hit, read, fpi, walBytes float64
}

// b11: the long log. The same workloads on an empty database and on one
// seeded with a long log as appends write it (internal/longlog: many small
// transactions, read models rebuilt, as a service that has run for months),
// in the same cluster and run: stored heartbeats/s (B1's load), GET active
// p99, serve's start-up to ready, projection lag p99 (B3's load); on the long
// one also bytes per event and rebuild and verify speed.
func (b *bench) b11(ctx context.Context) error {
	empty, err := b.b11Open(ctx, "empty", 0)
	if err != nil {
		return err
	}
	defer empty.close()
	long, err := b.b11Open(ctx, "long", b.sizes.B11Events)
	if err != nil {
		return err
	}
	defer long.close()
	if err := b.b11Measure(ctx, empty, long); err != nil {
		return err
	}
	size := fmt.Sprintf("%.0f M events", float64(long.events)/1e6)
	b.report.add(Result{ID: "B11", Figure: "stored heartbeats/s on a long log (" + size + ")", Value: long.heartbeats, Unit: "/s",
		Baseline: "/s on an empty log", BaselineValue: empty.heartbeats, Target: "ratio ≥ 0.9", Pass: long.heartbeats/empty.heartbeats >= 0.9,
		Notes: fmt.Sprintf("B1's load: 32 workers over HTTP, coalescing off, %s on each database in two turns alternating with the other's (empty, long, long, empty) after a %s warm-up each; the long log was seeded in %s (%s) and rebuilt; pg_stat_statements over the heartbeats and reads, empty: %s; long: %s",
			b.sizes.B11Duration, warmup, long.seeded.Round(time.Second), size, describeStatements(empty.statements), describeStatements(long.statements))})
	b.report.add(Result{ID: "B11", Figure: "GET active p99 on a long log", Value: ms(long.activeP99), Unit: "ms",
		Baseline: "ms on an empty log", BaselineValue: ms(empty.activeP99), Target: "ratio ≤ 1.2", Pass: ms(long.activeP99) <= 1.2*ms(empty.activeP99),
		Notes: fmt.Sprintf("500 requests/s open loop over the 32 runs, alone, latency from send to last byte; two turns on each database, alternating as the heartbeats'; p50 / p99 ms by turn, empty: %s; long: %s",
			strings.Join(empty.activeByTurn, ", "), strings.Join(long.activeByTurn, ", "))})
	b.report.add(Result{ID: "B11", Figure: "serve start-up to ready on a long log", Value: long.startup.Seconds(), Unit: "s",
		Baseline: "s on an empty log", BaselineValue: empty.startup.Seconds(), Target: "≤ 1 s more", Pass: long.startup-empty.startup <= time.Second,
		Notes: fmt.Sprintf("from exec to the first 200 of /readyz (database reachable, projections caught up); a process not ready after %s counts as %s", readyLimit, readyLimit)})
	b.report.add(Result{ID: "B11", Figure: "projection lag p99 at 1,000 appends/s on a long log", Value: ms(long.lagP99), Unit: "ms",
		Baseline: "ms on an empty log", BaselineValue: ms(empty.lagP99), Target: "ratio ≤ 1.2", Pass: ms(long.lagP99) <= 1.2*ms(empty.lagP99),
		Notes: "B3's load, " + b.sizes.B3Duration.String() + " measured on each database in two turns, alternating as the heartbeats'"})
	b.report.add(Result{ID: "B11", Figure: "bytes per event with its indexes", Value: long.bytesPerEvent, Unit: "B", Target: "information", Pass: true,
		Notes: "pg_total_relation_size('events') over the events seeded, after VACUUM"})
	b.report.add(Result{ID: "B11", Figure: "rebuild of the long log", Value: long.rebuildEPS, Unit: "events/s", Target: "information", Pass: true,
		Notes: "both read models, in this process (runledger rebuild's code)"})
	b.report.add(Result{ID: "B11", Figure: "verify of the long log", Value: long.verifyEPS, Unit: "events/s", Target: "information", Pass: true,
		Notes: "a clean verify, in this process (runledger verify's code)"})
	return nil
}

// b11Open prepares one database of B11 (seed is the number of events of its
// log) and starts serve on it, its start-up measured; the caller closes it.
func (b *bench) b11Open(ctx context.Context, name string, seed int) (out *b11Side, err error) {
	url, pool, err := b.database(ctx, "bench_b11_"+name)
	if err != nil {
		return nil, err
	}
	out = &b11Side{name: name, pool: pool}
	defer func() {
		if err != nil {
			out.close()
		}
	}()
	if seed > 0 {
		fmt.Fprintf(os.Stderr, "bench: B11 seeding %d events …\n", seed)
		res, err := longlog.Seed(ctx, pool, longlog.Options{Events: seed, Label: "long"})
		if err != nil {
			return nil, err
		}
		out.events, out.seeded = res.Events, res.Elapsed
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE events`); err != nil { // what autovacuum has done to a months-old log
			return nil, err
		}
		var bytes int64
		if err := pool.QueryRow(ctx, `SELECT pg_total_relation_size('events')`).Scan(&bytes); err != nil {
			return nil, err
		}
		out.bytesPerEvent = float64(bytes) / float64(res.Events)
		t := time.Now()
		if _, err := projections.Rebuild(ctx, pool, projections.RebuildOptions{Progress: io.Discard}); err != nil {
			return nil, err
		}
		out.rebuildEPS = float64(res.Events) / time.Since(t).Seconds()
		t = time.Now()
		diffs, err := projections.Verify(ctx, pool)
		if err != nil {
			return nil, err
		}
		if len(diffs) != 0 {
			return out, fmt.Errorf("verify of the seeded log found %d differences, first %s", len(diffs), diffs[0])
		}
		out.verifyEPS = float64(res.Events) / time.Since(t).Seconds()
	}
	// A service that has run for months is not in the middle of a bulk load:
	// the seed's dirty pages are written out (else the checkpoint they cause
	// runs through the measurement and every commit's fsync waits behind it)
	// and the rebuilt read models are vacuumed and have their statistics, as
	// autovacuum would have left them (a read model the rebuild just swapped
	// in was never vacuumed: its first autovacuum, which scans all of it,
	// would otherwise run through the measurement as the heartbeats' updates
	// cross its threshold, a cost a months-old table paid long ago). (The
	// empty database is not analyzed: statistics of empty tables would
	// mislead the planner once the workloads fill them.)
	if seed > 0 {
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
			return nil, err
		}
	}
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return nil, err
	}
	start := time.Now()
	out.srv, err = startServe(ctx, b.bin, url, "RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s")
	if err != nil {
		return nil, err
	}
	// A replica that never gets ready is a finding, not the end of the run:
	// its start-up is reported as the limit and the workloads go on.
	if err := waitReady(out.srv, readyLimit); err != nil {
		fmt.Fprintf(os.Stderr, "bench: B11 %s: %v\n", name, err)
	}
	out.startup = time.Since(start)
	return out, nil
}

// b11Measure runs B11's workloads on both databases in turns that
// alternate (empty, long, long, empty), each side's figure from its two
// turns: the machine's drift over the minutes a workload takes then falls
// on both sides alike, where measuring one database after the other gave
// it all to the second. Both served processes run throughout; the one not
// measured is idle.
func (b *bench) b11Measure(ctx context.Context, empty, long *b11Side) error {
	order := []*b11Side{empty, long, long, empty}
	// The runs start now, not when their database was prepared: the empty
	// side waits out the long one's seed (twenty minutes in the full bench),
	// and its runs would have gone silent past their TTL and been reaped.
	for _, side := range []*b11Side{empty, long} {
		var err error
		if side.runs, err = b.startHTTPRuns(side.srv, "b11-", 32, 16); err != nil {
			return err
		}
		b.heartbeatLoad(side.srv, side.runs, warmup, 0)
	}
	if _, err := empty.pool.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil { // the whole cluster's
		return err
	}
	stored := map[*b11Side]int64{}
	elapsed := map[*b11Side]time.Duration{}
	for _, side := range order {
		n, d := b.heartbeatLoad(side.srv, side.runs, b.sizes.B11Duration/2, 0)
		stored[side] += n
		elapsed[side] += d
	}
	active := map[*b11Side][]time.Duration{}
	for _, side := range order {
		lat := activeReads(side.srv, side.runs, 500, b.sizes.B11Duration/2)
		side.activeByTurn = append(side.activeByTurn, fmt.Sprintf("%.2f / %.2f", ms(percentile(lat, 50)), ms(percentile(lat, 99))))
		active[side] = append(active[side], lat...)
	}
	for _, side := range []*b11Side{empty, long} {
		var err error
		if side.statements, err = followedStatements(ctx, side.pool); err != nil {
			return err
		}
	}
	lags := map[*b11Side][]time.Duration{}
	for i, side := range order {
		l, _, _, err := projectionLag(ctx, side.pool, side.srv, fmt.Sprintf("b11-lag%d-", i), b.sizes.B3Duration/2)
		if err != nil {
			return err
		}
		lags[side] = append(lags[side], l...)
	}
	for _, side := range []*b11Side{empty, long} {
		if stored[side] == 0 || len(active[side]) == 0 || len(lags[side]) == 0 {
			return fmt.Errorf("B11 %s: %d heartbeats stored, %d GET active answered 200, %d lags measured: the measurement is broken, not slow",
				side.name, stored[side], len(active[side]), len(lags[side]))
		}
		side.heartbeats = float64(stored[side]) / elapsed[side].Seconds()
		sortDurations(active[side])
		side.activeP99 = percentile(active[side], 99)
		sortDurations(lags[side])
		side.lagP99 = percentile(lags[side], 99)
		fmt.Fprintf(os.Stderr, "bench: B11 %s: start-up %s, %.0f heartbeats/s, GET active p99 %s, lag p99 %s; %s; autovacuum during the run: %s\n", side.name,
			side.startup.Round(time.Millisecond), side.heartbeats, side.activeP99.Round(10*time.Microsecond), side.lagP99.Round(10*time.Microsecond),
			describeStatements(side.statements), autovacuums(ctx, side.pool))
	}
	return nil
}

// readyLimit is how long B11 waits for a served process to get ready.
const readyLimit = 2 * time.Minute

// waitReady waits for srv's /readyz to answer 200.
func waitReady(srv *served, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if res, err := http.Get(srv.url + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("serve not ready after %s", limit)
}

// activeReads sends GET …/runs/active at rate per second (open loop) over
// runs for d and returns the latencies of the 200s, sorted.
func activeReads(srv *served, runs []*httpRun, rate int, d time.Duration) []time.Duration {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; time.Since(start) < d; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		r := runs[i%len(runs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			status, err := call("GET", srv.url+"/v1/businesses/"+r.business+"/runs/active", r.user, nil, nil)
			if err == nil && status == 200 {
				mu.Lock()
				latencies = append(latencies, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sortDurations(latencies)
	return latencies
}

// followed are the statements B11 reports from pg_stat_statements, by a
// condition on their text that holds before and after the long-log fix.
var followed = []struct{ name, where string }{
	{"consumer read", `query LIKE '%FROM events%' AND query LIKE '%pg_snapshot_xmin%' AND query LIKE '%FOR UPDATE%'`},
	{"lag", `query LIKE '%events e%' AND query LIKE '%projection_offsets WHERE consumer_group%'`},
	{"append", `query LIKE 'WITH input AS MATERIALIZED%'`},
	{"GET active's read", `query LIKE '%FROM active_runs WHERE business_id = $1'`},
}

func followedStatements(ctx context.Context, pool *pgxpool.Pool) ([]statementStat, error) {
	var out []statementStat
	for _, f := range followed {
		s := statementStat{name: f.name}
		if err := pool.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0)::float8,
				coalesce(sum(rows) / nullif(sum(calls), 0), 0)::float8,
				coalesce(sum(shared_blks_hit) / nullif(sum(calls), 0), 0)::float8,
				coalesce(sum(shared_blks_read) / nullif(sum(calls), 0), 0)::float8,
				coalesce(sum(wal_fpi) / nullif(sum(calls), 0), 0)::float8,
				coalesce(sum(wal_bytes) / nullif(sum(calls), 0), 0)::float8
			FROM pg_stat_statements WHERE `+f.where+` AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(
			&s.calls, &s.meanMS, &s.rows, &s.hit, &s.read, &s.fpi, &s.walBytes); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func describeStatements(list []statementStat) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = fmt.Sprintf("%s %d calls, %.3f ms each (per call: %.1f rows, %.1f buffers hit, %.2f read, %.2f WAL full-page images, %.0f WAL bytes)",
			s.name, s.calls, s.meanMS, s.rows, s.hit, s.read, s.fpi, s.walBytes)
	}
	return strings.Join(parts, "; ")
}

// autovacuums lists the tables autovacuum or autoanalyze visited in the
// database so far, with their counts: what ran beside the measurement.
func autovacuums(ctx context.Context, pool *pgxpool.Pool) string {
	rows, err := pool.Query(ctx, `SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables
		WHERE autovacuum_count + autoanalyze_count > 0 ORDER BY relname`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var name string
		var vacuums, analyzes int64
		if rows.Scan(&name, &vacuums, &analyzes) == nil {
			parts = append(parts, fmt.Sprintf("%s %d/%d", name, vacuums, analyzes))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ") + " (vacuums/analyzes)"
}
