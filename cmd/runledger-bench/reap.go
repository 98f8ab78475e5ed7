package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// b5: runs, of which some go silent together; how long after each one's
// deadline the reaper of a serve process ends it. Then B7: that process's
// peak memory with all those runs active.
func (b *bench) b5(ctx context.Context) error {
	url, pool, err := b.database(ctx, "bench_b5")
	if err != nil {
		return err
	}
	defer pool.Close()
	ttl, interval := b.sizes.B5TTL, b.sizes.B5Interval
	srv, err := startServe(ctx, b.bin, url, "RUNLEDGER_STALE_AFTER="+ttl.String(), "RUNLEDGER_REAP_INTERVAL="+interval.String(),
		"RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s")
	if err != nil {
		return err
	}
	defer srv.stop()
	setup := time.Now()
	doomed, err := b.startHTTPRuns(srv, "b5-silent-", b.sizes.B5Silent, 16)
	if err != nil {
		return err
	}
	alive, err := b.startHTTPRuns(srv, "b5-alive-", b.sizes.B5Runs-b.sizes.B5Silent, 16)
	if err != nil {
		return err
	}
	// Keep the others alive past the measurement: one heartbeat each halfway to the deadline.
	time.Sleep(time.Until(setup.Add(ttl / 2)))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, r := range alive {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, _ = call("POST", srv.url+"/v1/businesses/"+r.business+"/runs/"+r.id+"/heartbeat", r.worker,
				map[string]any{"completed_calls": 1, "failed_calls": 0}, nil)
		}()
	}
	wg.Wait()
	meter := meterCPU(srv)
	deadline := time.Now().Add(3 * ttl)
	var ended int
	for time.Now().Before(deadline) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = 'RunStaleFailed'`).Scan(&ended); err != nil {
			return err
		}
		if ended >= len(doomed) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	gen, server := meter.shares()
	busy := meter.machine()
	var p50, worst float64
	var wrong int
	if err := pool.QueryRow(ctx, `
		SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), max(l), count(*) FILTER (WHERE business_id NOT LIKE 'b5-silent-%')
		FROM (SELECT business_id, extract(epoch FROM recorded_at - ((data->>'last_activity_at')::timestamptz + $1::interval)) AS l
		      FROM events WHERE type = 'RunStaleFailed') x`, ttl.String()).Scan(&p50, &worst, &wrong); err != nil {
		return err
	}
	notes := fmt.Sprintf("%d of %d runs silent, TTL %s, reap interval %s: %d ended as stale (%d of them wrongly); detection p50 %.0f ms, max %.0f ms after each run's deadline",
		len(doomed), b.sizes.B5Runs, ttl, interval, ended, wrong, p50*1000, worst*1000)
	b.report.add(Result{ID: "B5", Figure: "detection latency after the deadline (max)", Value: worst * 1000, Unit: "ms",
		Baseline: "ms reap interval", BaselineValue: float64(interval.Milliseconds()), Target: "≤ interval + 1 s",
		Pass: ended == len(doomed) && wrong == 0 && worst <= interval.Seconds()+1, GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy, Notes: notes})

	peak, cur := srv.memory()
	b.report.add(Result{ID: "B7", Figure: fmt.Sprintf("serve peak RSS with %d active runs", len(alive)), Value: float64(peak) / (1 << 20), Unit: "MiB",
		Target: "≤ 150 MB", Pass: float64(peak) <= 150e6, Notes: fmt.Sprintf("current RSS %.1f MiB after setting up %d runs over HTTP and reaping %d",
			float64(cur)/(1<<20), b.sizes.B5Runs, len(doomed))})
	return nil
}
