package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/longlog"
	"github.com/runledger/runledger/projections"
)

// b11Side is what B11 measured on one database.
type b11Side struct {
	name           string
	events         int64
	startup        time.Duration
	heartbeats     float64       // stored per second
	activeP50      time.Duration // GET active, interleaved with the other side's
	activeP99      time.Duration
	activeByPart   string        // p99 by quarter of the interleaved reads, for the notes
	activeVacuumed string        // autovacuums of either database during the interleaved reads (long side only)
	activeTurnsP99 time.Duration // GET active in turns of its own
	activeByTurn   []string      // p50 / p99 of each turn, for the notes
	lagP99         time.Duration
	lagByTurn      []string // p50 / p99 of each turn, for the notes
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
		Notes: fmt.Sprintf("500 requests/s open loop for %s, sent to the two databases' servers in turn request by request (250/s each, over each one's 32 runs), after a %s warm-up of each, straight after the heartbeats; latency from send to last byte; p50 %.2f ms long, %.2f ms empty; p99 by quarter of the run, empty: %s; long: %s; autovacuum meanwhile: %s",
			2*b.sizes.B11Duration, warmup, ms(long.activeP50), ms(empty.activeP50), empty.activeByPart, long.activeByPart, cmp.Or(long.activeVacuumed, "none"))})
	b.report.add(Result{ID: "B11", Figure: "GET active p99 on a long log, in turns", Value: ms(long.activeTurnsP99), Unit: "ms",
		Baseline: "ms on an empty log", BaselineValue: ms(empty.activeTurnsP99), Target: "information", Pass: true,
		Notes: fmt.Sprintf("500 requests/s open loop over the 32 runs, one server at a time, in two turns of %s on each, alternating as the heartbeats', after the interleaved reads; p50 / p99 ms by turn, empty: %s; long: %s",
			b.sizes.B11Duration/2, strings.Join(empty.activeByTurn, ", "), strings.Join(long.activeByTurn, ", "))})
	b.report.add(Result{ID: "B11", Figure: "serve start-up to ready on a long log", Value: long.startup.Seconds(), Unit: "s",
		Baseline: "s on an empty log", BaselineValue: empty.startup.Seconds(), Target: "≤ 1 s more", Pass: long.startup-empty.startup <= time.Second,
		Notes: fmt.Sprintf("from exec to the first 200 of /readyz (database reachable, projections caught up); a process not ready after %s counts as %s", readyLimit, readyLimit)})
	b.report.add(Result{ID: "B11", Figure: "projection lag p99 at 1,000 appends/s on a long log", Value: ms(long.lagP99), Unit: "ms",
		Baseline: "ms on an empty log", BaselineValue: ms(empty.lagP99), Target: "ratio ≤ 1.2", Pass: ms(long.lagP99) <= 1.2*ms(empty.lagP99),
		Notes: fmt.Sprintf("B3's load, %s measured on each database in two turns, alternating as the heartbeats'; p50 / p99 ms by turn, empty: %s; long: %s",
			b.sizes.B3Duration, strings.Join(empty.lagByTurn, ", "), strings.Join(long.lagByTurn, ", "))})
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
	env := []string{"RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s"}
	if addr := b11DebugAddr(name); addr != "" {
		env = append(env, "RUNLEDGER_DEBUG_ADDR="+addr)
	}
	out.srv, err = startServe(ctx, b.bin, url, env...)
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
// measured is idle. GET active's p99, which one autovacuum in a turn
// moves, is measured interleaved instead (b11ActiveReads).
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
	active, err := b.b11ActiveReads(ctx, empty, long, order)
	if err != nil {
		return err
	}
	for _, side := range []*b11Side{empty, long} {
		var err error
		if side.statements, err = followedStatements(ctx, side.pool); err != nil {
			return err
		}
	}
	lags := map[*b11Side][]time.Duration{}
	for i, side := range order {
		t := time.Now()
		l, _, _, err := projectionLag(ctx, side.pool, side.srv, fmt.Sprintf("b11-lag%d-", i), b.sizes.B3Duration/2)
		if err != nil {
			return err
		}
		lags[side] = append(lags[side], l...)
		sortDurations(l)
		turn := fmt.Sprintf("%.2f / %.2f", ms(percentile(l, 50)), ms(percentile(l, 99)))
		if vacuumed := autovacuumedSinceBoth(ctx, empty, long, t); vacuumed != "" {
			turn += " (autovacuum meanwhile: " + vacuumed + ")"
		}
		side.lagByTurn = append(side.lagByTurn, turn)
	}
	for _, side := range []*b11Side{empty, long} {
		if stored[side] == 0 || len(active[side]) == 0 || len(lags[side]) == 0 {
			return fmt.Errorf("B11 %s: %d heartbeats stored, %d GET active answered 200, %d lags measured: the measurement is broken, not slow",
				side.name, stored[side], len(active[side]), len(lags[side]))
		}
		side.heartbeats = float64(stored[side]) / elapsed[side].Seconds()
		sortDurations(lags[side])
		side.lagP99 = percentile(lags[side], 99)
		fmt.Fprintf(os.Stderr, "bench: B11 %s: start-up %s, %.0f heartbeats/s, GET active p99 %s, lag p99 %s; %s; autovacuum during the run: %s\n", side.name,
			side.startup.Round(time.Millisecond), side.heartbeats, side.activeP99.Round(10*time.Microsecond), side.lagP99.Round(10*time.Microsecond),
			describeStatements(side.statements), autovacuums(ctx, side.pool))
	}
	return nil
}

// b11ActiveReads measures GET active on both sides, after a warm-up of
// each (a server's first reads prepare the statement on its pool's
// connections): first interleaved, the target figure, straight after the
// heartbeats, whose updates set off the autovacuums of the read models;
// then in turns of its own, as information. It returns each side's
// latencies in turns.
func (b *bench) b11ActiveReads(ctx context.Context, empty, long *b11Side, order []*b11Side) (map[*b11Side][]time.Duration, error) {
	sides := []*b11Side{empty, long}
	for _, side := range sides {
		activeReads(side.srv, side.runs, 500, warmup)
	}
	if err := b.b11Interleaved(ctx, empty, long); err != nil {
		return nil, err
	}
	active := map[*b11Side][]time.Duration{}
	for _, side := range order {
		t := time.Now()
		lat := activeReads(side.srv, side.runs, 500, b.sizes.B11Duration/2)
		turn := fmt.Sprintf("%.2f / %.2f", ms(percentile(lat, 50)), ms(percentile(lat, 99)))
		if vacuumed := autovacuumedSinceBoth(ctx, empty, long, t); vacuumed != "" {
			turn += " (autovacuum meanwhile: " + vacuumed + ")"
		}
		side.activeByTurn = append(side.activeByTurn, turn)
		active[side] = append(active[side], lat...)
	}
	for _, side := range sides {
		sortDurations(active[side])
		side.activeTurnsP99 = percentile(active[side], 99)
	}
	return active, nil
}

// b11Interleaved is B11's GET active figure: 500 reads/s for twice
// B11Duration, sent to the two servers in turn, request by request.
func (b *bench) b11Interleaved(ctx context.Context, empty, long *b11Side) error {
	sides := []*b11Side{empty, long}
	d := 2 * b.sizes.B11Duration
	start := time.Now()
	end, err := b11Observe(ctx, sides, d)
	if err != nil {
		return err
	}
	reads := interleavedActiveReads([]*served{empty.srv, long.srv}, [][]*httpRun{empty.runs, long.runs}, 500, d)
	end(reads)
	for k, side := range sides {
		lat := latencies(reads[k])
		if len(lat) == 0 {
			return fmt.Errorf("B11 %s: no GET active answered 200 interleaved: the measurement is broken, not slow", side.name)
		}
		side.activeP50, side.activeP99 = percentile(lat, 50), percentile(lat, 99)
		side.activeByPart = p99ByPart(reads[k], 4)
	}
	long.activeVacuumed = autovacuumedSinceBoth(ctx, empty, long, start)
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
	return latencies(interleavedActiveReads([]*served{srv}, [][]*httpRun{runs}, rate, d)[0])
}

// activeRead is one answered GET …/runs/active: when it was sent (since the
// start of its run of requests) and how long it took.
type activeRead struct{ sent, latency time.Duration }

// interleavedActiveReads sends GET …/runs/active at rate per second in all
// (open loop) for d, request i to server i mod len(servers) over that
// server's runs, and returns each server's answered 200s in the order sent.
// Interleaved request by request, the servers are measured under the same
// conditions: whatever else the machine does falls on each alike, which
// turns of a few seconds each cannot promise for a p99.
func interleavedActiveReads(servers []*served, runs [][]*httpRun, rate int, d time.Duration) [][]activeRead {
	var (
		mu  sync.Mutex
		out = make([][]activeRead, len(servers))
		wg  sync.WaitGroup
	)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; time.Since(start) < d; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		k := i % len(servers)
		srv, r := servers[k], runs[k][(i/len(servers))%len(runs[k])]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			status, err := call("GET", srv.url+"/v1/businesses/"+r.business+"/runs/active", r.user, nil, nil)
			if err == nil && status == 200 {
				mu.Lock()
				out[k] = append(out[k], activeRead{sent: t.Sub(start), latency: time.Since(t)})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, reads := range out {
		sort.Slice(reads, func(a, b int) bool { return reads[a].sent < reads[b].sent })
	}
	return out
}

// latencies is the latencies of reads, sorted.
func latencies(reads []activeRead) []time.Duration {
	out := make([]time.Duration, len(reads))
	for i, r := range reads {
		out[i] = r.latency
	}
	sortDurations(out)
	return out
}

// p99ByPart is the p99 of each of parts equal spans of reads (in the order
// sent), in ms: how much the tail moved over the measurement.
func p99ByPart(reads []activeRead, parts int) string {
	var list []string
	for p := range parts {
		lat := latencies(reads[p*len(reads)/parts : (p+1)*len(reads)/parts])
		list = append(list, fmt.Sprintf("%.2f", ms(percentile(lat, 99))))
	}
	return strings.Join(list, ", ")
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

// autovacuumedSince lists the tables of pool's database that autovacuum
// vacuumed or analyzed since the given instant, each with the seconds after
// it that it finished (its last one, when it did so twice), for a turn's
// notes: a vacuum or analyze of a large read model is work the machine does
// beside the measured requests, on whichever database.
func autovacuumedSince(ctx context.Context, pool *pgxpool.Pool, db string, since time.Time) []string {
	list, err := queryStrings(ctx, pool, `SELECT $2 || ' ' || relname || ' ' || what || ' +' || to_char(extract(epoch FROM at - $1), 'FM990.0') || 's'
		FROM pg_stat_user_tables, LATERAL (VALUES ('vacuum', last_autovacuum), ('analyze', last_autoanalyze)) v(what, at)
		WHERE at >= $1 ORDER BY at`, since, db)
	if err != nil {
		return []string{err.Error()}
	}
	return list
}

// queryStrings runs a query of one text column and returns its rows.
func queryStrings(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) ([]string, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// autovacuumedSinceBoth is autovacuumedSince on both of B11's databases,
// joined ("" when neither was visited).
func autovacuumedSinceBoth(ctx context.Context, empty, long *b11Side, since time.Time) string {
	return strings.Join(append(autovacuumedSince(ctx, empty.pool, "empty", since), autovacuumedSince(ctx, long.pool, "long", since)...), ", ")
}
