package main

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// b3: steady 1,000 appends/s; lag from an append's commit to its row in the
// runs read model (the serve subprocess projects).
func (b *bench) b3(ctx context.Context) error {
	url, pool, err := b.database(ctx, "bench_b3")
	if err != nil {
		return err
	}
	defer pool.Close()
	srv, err := startServe(ctx, b.bin, url)
	if err != nil {
		return err
	}
	defer srv.stop()
	lags, elapsed, meter, err := projectionLag(ctx, pool, srv, "b3-", b.sizes.B3Duration)
	if err != nil {
		return err
	}
	gen, server := meter.shares()
	busy := meter.machine()
	sortDurations(lags)
	p50, p99 := percentile(lags, 50), percentile(lags, 99)
	notes := fmt.Sprintf("%d appends measured in %s (%.0f/s) after a %s warm-up, made by this process as another replica would (its append statements NOTIFY; the served projector wakes on them); visibility sampled every ~1 ms",
		len(lags), (elapsed - warmup).Round(time.Millisecond), float64(len(lags))/(elapsed-warmup).Seconds(), warmup)
	b.report.add(Result{ID: "B3", Figure: "projection lag p50 at 1,000 appends/s", Value: ms(p50), Unit: "ms", Target: "≤ 10 ms",
		Pass: ms(p50) <= 10, GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy, Notes: notes})
	b.report.add(Result{ID: "B3", Figure: "projection lag p99 at 1,000 appends/s", Value: ms(p99), Unit: "ms", Target: "≤ 50 ms",
		Pass: ms(p99) <= 50, GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy})
	return nil
}

// projectionLag runs B3's load on srv's database for measure after a
// warm-up: 1,000 heartbeat appends/s over 100 runs of businesses prefix+n,
// made by this process as another replica would, and returns each
// measured append's lag from its commit to its row in the runs read model,
// the workload's duration and a CPU meter started after the warm-up.
func projectionLag(ctx context.Context, pool *pgxpool.Pool, srv *served, prefix string, measure time.Duration) ([]time.Duration, time.Duration, cpuMeter, error) {
	// The bench appends as another replica would: its append statements
	// NOTIFY, and the served process's projector wakes for them.
	store := eventstore.NewWithOptions(pool, eventstore.Options{NotifyChannel: feed.AppendsChannel})
	rn := runs.NewRunner(store, domain.Policy{StaleAfter: time.Hour})
	const nRuns, writers, rate = 100, 20, 1000
	ids := make([]uuid.UUID, nRuns)
	for i := range ids {
		ids[i] = uuid.New()
		if _, err := rn.Start(ctx, domain.StartRun{RunID: ids[i], BusinessID: fmt.Sprintf("%s%03d", prefix, i), WorkerID: "w",
			TotalCalls: 10_000_000}, eventstore.Metadata{}); err != nil {
			return nil, 0, cpuMeter{}, err
		}
	}
	type sent struct {
		pos       int64
		committed time.Time
	}
	var (
		mu      sync.Mutex
		pending = map[uuid.UUID][]sent{}
		lags    []time.Duration
		wg      sync.WaitGroup
	)
	d := measure + warmup
	var meter cpuMeter
	start := time.Now()
	measureFrom := start.Add(warmup)
	time.AfterFunc(warmup, func() { mu.Lock(); meter = meterCPU(srv); mu.Unlock() })
	every := time.Second * writers / rate
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls := 0
			for i := 0; ; i++ {
				next := start.Add(time.Duration(i) * every)
				if next.Sub(start) >= d {
					return
				}
				time.Sleep(time.Until(next))
				run := ids[(w+i*writers)%nRuns]
				calls++
				res, err := rn.Execute(ctx, fmt.Sprintf("%s%03d", prefix, indexOf(ids, run)), run,
					domain.RecordHeartbeat{CompletedCalls: int(time.Since(start).Milliseconds())}, eventstore.Metadata{})
				if err != nil || res.LastPosition == 0 {
					continue
				}
				mu.Lock()
				pending[run] = append(pending[run], sent{res.LastPosition, time.Now()})
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	var observer sync.WaitGroup
	observer.Add(1)
	go func() { // watch the read model: an event is visible when its run's row reaches its position
		defer observer.Done()
		for {
			// By primary key: a read whose cost grew with the runs table
			// (B11's long log has tens of thousands) would add its own
			// time to every lag it measures.
			rows, err := pool.Query(ctx, `SELECT run_id, last_position FROM runs WHERE run_id = ANY($1)`, ids)
			now := time.Now()
			if err == nil {
				for rows.Next() {
					var id uuid.UUID
					var pos int64
					if rows.Scan(&id, &pos) != nil {
						continue
					}
					mu.Lock()
					q := pending[id]
					for len(q) > 0 && q[0].pos <= pos {
						if q[0].committed.After(measureFrom) {
							lags = append(lags, now.Sub(q[0].committed))
						}
						if debugLag && now.Sub(q[0].committed) > 200*time.Millisecond {
							fmt.Fprintf(os.Stderr, "lag %s for pos %d committed at +%s\n", now.Sub(q[0].committed).Round(time.Millisecond), q[0].pos, q[0].committed.Sub(start).Round(time.Millisecond))
						}
						q = q[1:]
					}
					pending[id] = q
					mu.Unlock()
				}
				rows.Close()
			}
			select {
			case <-done:
				mu.Lock()
				left := 0
				for _, q := range pending {
					left += len(q)
				}
				mu.Unlock()
				if left == 0 || time.Since(start) > d+30*time.Second {
					return
				}
			default:
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	observer.Wait()
	mu.Lock()
	defer mu.Unlock()
	return lags, elapsed, meter, nil
}

var debugLag = os.Getenv("BENCH_DEBUG_LAG") != ""

func indexOf(ids []uuid.UUID, id uuid.UUID) int {
	for i, v := range ids {
		if v == id {
			return i
		}
	}
	return -1
}

// generateEvents inserts runs × 100 events (start, 98 heartbeats, completion)
// over the given number of businesses, runs of a business one after another.
func generateEvents(ctx context.Context, pool *pgxpool.Pool, runs, businesses int, prefix string) error {
	_, err := pool.Exec(ctx, `
		INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at)
		SELECT gen_random_uuid(), r.id, v, r.biz,
			CASE WHEN v = 1 THEN 'RunStarted' WHEN v = 100 THEN 'RunCompleted' ELSE 'Heartbeat' END, 1,
			CASE WHEN v = 1 THEN jsonb_build_object('run_id', r.id, 'business_id', r.biz, 'worker_id', 'w', 'total_calls', 1000, 'occurred_at', t.ts)
			     WHEN v = 100 THEN jsonb_build_object('outcome', 'completed', 'completed_calls', 990, 'failed_calls', 9, 'occurred_at', t.ts)
			     ELSE jsonb_build_object('completed_calls', v * 10, 'failed_calls', v / 11, 'occurred_at', t.ts) END,
			jsonb_build_object('actor', CASE WHEN v = 1 THEN 'worker:w' ELSE 'worker' END), t.ts
		FROM (SELECT n, gen_random_uuid() AS id, $1 || (n % $2) AS biz FROM generate_series(0, $3 - 1) n) r
		CROSS JOIN generate_series(1, 100) v
		CROSS JOIN LATERAL (SELECT timestamptz '2026-01-01' + (r.n / $2) * interval '20 minutes' + (r.n % $2) * interval '1 millisecond'
			+ v * interval '6 seconds' AS ts) t
		ORDER BY r.n, v`, prefix, businesses, runs)
	if err != nil {
		return fmt.Errorf("generate events: %w", err)
	}
	_, err = pool.Exec(ctx, `VACUUM ANALYZE events`)
	return err
}

// b4: rebuild of runs × 100 events against COPY of the same table.
func (b *bench) b4(ctx context.Context) error {
	_, pool, err := b.database(ctx, "bench_b4")
	if err != nil {
		return err
	}
	defer pool.Close()
	runs := b.sizes.B4Runs
	if err := generateEvents(ctx, pool, runs, runs/10, "b4-"); err != nil {
		return err
	}
	events := int64(runs) * 100
	copySQL := `COPY (SELECT position, event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata,
		occurred_at, recorded_at, transaction_id FROM events ORDER BY position) TO '/dev/null'`
	if _, err := pool.Exec(ctx, copySQL); err != nil { // warm the cache for both
		return err
	}
	t := time.Now()
	if _, err := pool.Exec(ctx, copySQL); err != nil {
		return err
	}
	copyEPS := float64(events) / time.Since(t).Seconds()
	meter := meterCPU(nil)
	t = time.Now()
	stats, err := projections.Rebuild(ctx, pool, projections.RebuildOptions{Progress: io.Discard})
	if err != nil {
		return err
	}
	took := time.Since(t)
	gen, _ := meter.shares()
	busy := meter.machine()
	eps := float64(stats[0].Events) / took.Seconds()
	b.report.add(Result{ID: "B4", Figure: fmt.Sprintf("rebuild (both read models) of %d events over %d runs", events, runs), Value: eps, Unit: "events/s",
		Baseline: "events/s COPY TO /dev/null", BaselineValue: copyEPS, Target: "ratio ≥ 0.25", Pass: eps/copyEPS >= 0.25, GeneratorCPU: gen, MachineCPU: busy,
		Notes: fmt.Sprintf("rebuild took %s for %d events (one fold for both projections, %d + %d rows written); rebuild CPU is in the generator column (it runs in this process)",
			took.Round(time.Millisecond), stats[0].Events, stats[0].Rows, stats[1].Rows)})
	return nil
}

// b8: the timeline (first 1,000) and a replay in the middle of a business
// with 100,000 events, through the HTTP API.
func (b *bench) b8(ctx context.Context) error {
	_, pool, err := b.database(ctx, "bench_b8")
	if err != nil {
		return err
	}
	defer pool.Close()
	nRuns := b.sizes.B8Events / 100
	if err := generateEvents(ctx, pool, nRuns, 1, "b8-"); err != nil {
		return err
	}
	runner := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	srv := api.New(api.Config{Runner: runner, Pool: pool, Auth: b.auth, Policy: domain.DefaultPolicy(), Logger: b.logger})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	op := b.token("*", api.RoleOperator)
	mid := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(nRuns/2) * 20 * time.Minute).Add(5 * time.Minute)
	measure := func(path string) (time.Duration, error) {
		var ds []time.Duration
		for i := 0; i < 21; i++ {
			t := time.Now()
			status, err := call("GET", hs.URL+path, op, nil, nil)
			if err != nil || status != 200 {
				return 0, fmt.Errorf("GET %s: %d %v", path, status, err)
			}
			ds = append(ds, time.Since(t))
		}
		sortDurations(ds)
		return percentile(ds, 50), nil
	}
	tl, err := measure("/v1/businesses/b8-0/timeline?limit=1000")
	if err != nil {
		return err
	}
	rp, err := measure("/v1/businesses/b8-0/replay?at=" + mid.Format(time.RFC3339))
	if err != nil {
		return err
	}
	notes := fmt.Sprintf("business with %d events; median of 21 requests each over HTTP", b.sizes.B8Events)
	b.report.add(Result{ID: "B8", Figure: "timeline, first 1,000 events", Value: ms(tl), Unit: "ms", Target: "≤ 100 ms", Pass: ms(tl) <= 100, Notes: notes})
	b.report.add(Result{ID: "B8", Figure: "replay at an instant in the middle", Value: ms(rp), Unit: "ms", Target: "≤ 1000 ms", Pass: ms(rp) <= 1000})
	return nil
}
