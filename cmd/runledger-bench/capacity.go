package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runledger/runledger/api"
	sdk "github.com/runledger/runledger/api/client"
)

// B15, capacity (issue 24): how many concurrent SDK workers one `serve` and
// one PostgreSQL carry with heartbeat p99 ≤ 50 ms and no error. Each worker
// is api/client's Run with its defaults: it heartbeats at the server's
// heartbeat_min_interval, and the server coalesces at that interval.
//
// The service's default interval is 5 s; stepping thousands of workers at
// that pace would take minutes per step, so the server's interval is scaled
// down by b15Scale (and the SDK follows it, as it follows any policy): one
// worker here sends b15Scale times the heartbeats of a default worker, so N
// workers here load the heartbeat path like b15Scale × N default workers.
// The equivalence holds for the heartbeat path (requests, appends,
// projections per second); it does not hold for what grows with the number
// of open runs rather than their rate (rows in the read models, the
// clients' connections), which this run holds b15Scale times fewer of.
const (
	b15Scale    = 10
	b15Interval = 5 * time.Second / b15Scale
	b15P99      = 50 * time.Millisecond
)

// b15Step is one step's outcome.
type b15Step struct {
	workers               int
	heartbeats, failures  int64
	p50, p99              time.Duration
	server, pg, gen, busy float64
	poolWaits             float64
	serveUS, pgUS         float64 // CPU per answered heartbeat
}

func (s b15Step) ok() bool { return s.failures == 0 && s.heartbeats > 0 && s.p99 <= b15P99 }

// saturated says the step is past the knee: errors, heartbeats answered
// below 90% of the workers' pace, or a p99 over a second. Stepping goes on
// past the 50 ms target to here, so a loaded machine (where the target may
// fail at the first step) still shows where the service saturates.
func (s b15Step) saturated(d time.Duration) bool {
	offered := float64(s.workers) * d.Seconds() / b15Interval.Seconds()
	return s.failures > 0 || float64(s.heartbeats) < 0.9*offered || s.p99 > time.Second
}

func (s b15Step) String() string {
	return fmt.Sprintf("%d workers (≈ %d at 5 s): %d heartbeats, %d failed, p50 %.1f ms, p99 %.1f ms, CPU of the machine: serve %.0f%%, PostgreSQL %.0f%%, generator %.0f%%, all busy %.0f%%; CPU per heartbeat: serve %.0f µs, PostgreSQL %.0f µs; pool waits %.0f",
		s.workers, s.workers*b15Scale, s.heartbeats, s.failures, ms(s.p50), ms(s.p99), 100*s.server, 100*s.pg, 100*s.gen, 100*s.busy,
		s.serveUS, s.pgUS, s.poolWaits)
}

// heartbeatTimer records the latency of every heartbeat request it sends.
type heartbeatTimer struct {
	next http.RoundTripper
	mu   sync.Mutex
	lat  []time.Duration
	fail atomic.Int64
}

func (t *heartbeatTimer) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(req.URL.Path, "/heartbeat") {
		return t.next.RoundTrip(req)
	}
	start := time.Now()
	res, err := t.next.RoundTrip(req)
	d := time.Since(start)
	if err != nil || res.StatusCode >= 300 {
		if req.Context().Err() == nil { // a heartbeat cut short by the worker's end is not the server's
			t.fail.Add(1)
		}
		return res, err
	}
	t.mu.Lock()
	t.lat = append(t.lat, d)
	t.mu.Unlock()
	return res, err
}

// take returns what was recorded since the last take and starts afresh.
func (t *heartbeatTimer) take() ([]time.Duration, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lat := t.lat
	t.lat = nil
	return lat, t.fail.Swap(0)
}

func (b *bench) b15(ctx context.Context) error {
	url, pool, err := b.database(ctx, "bench_b15")
	if err != nil {
		return err
	}
	defer pool.Close()
	srv, err := startServe(ctx, b.bin, url, "RUNLEDGER_HEARTBEAT_MIN_INTERVAL="+b15Interval.String())
	if err != nil {
		return err
	}
	defer srv.stop()
	timer := &heartbeatTimer{next: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096}}
	httpClient := &http.Client{Transport: timer}
	runCtx, stopWorkers := context.WithCancel(ctx)
	var (
		wg        sync.WaitGroup
		runErrors atomic.Int64
		firstErr  atomic.Value
	)
	defer func() { stopWorkers(); wg.Wait() }()
	addWorker := func(i int) error {
		// A business has one running run at a time: one business, worker
		// token and client per worker (the clients share one transport).
		business := fmt.Sprintf("b15-%05d", i)
		c, err := sdk.New(sdk.Options{BaseURL: srv.url, Token: b.token(business, api.RoleWorker),
			HTTPClient: httpClient, WorkerID: "b15"})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Run(runCtx, business, sdk.RunSpec{TotalCalls: 1_000_000}, func(ctx context.Context, p *sdk.Progress) error {
				t := time.NewTicker(b15Interval / 2)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-t.C:
						p.Add(1, 0)
					}
				}
			})
			if err != nil && !errors.Is(err, context.Canceled) && runCtx.Err() == nil {
				runErrors.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
		return nil
	}
	d := b.sizes.B1Duration
	steps := []int{10, 25, 50, 100, 200, 400, 600, 800, 1000, 1400, 1800, 2400, 3200, 4000}
	var results []b15Step
	running := 0
	for _, n := range steps {
		for ; running < n; running++ {
			if err := addWorker(running); err != nil {
				return err
			}
			if running%50 == 49 {
				time.Sleep(b15Interval / 10) // spread the starts (and so the heartbeats) over the interval
			}
		}
		time.Sleep(warmup + 2*b15Interval) // every new worker started and heartbeating
		timer.take()
		errs0 := runErrors.Load()
		waits0, _ := poolWaits(srv)
		meter := meterCPU(srv)
		pg0 := postgresCPU(b.cluster.Dir)
		start := time.Now()
		time.Sleep(d)
		lat, failed := timer.take()
		capacity := time.Since(start).Seconds() * float64(b.report.Machine.Cores)
		gen, server := meter.shares()
		waits1, _ := poolWaits(srv)
		sortDurations(lat)
		st := b15Step{workers: n, heartbeats: int64(len(lat)), failures: failed + runErrors.Load() - errs0,
			p50: percentile(lat, 50), p99: percentile(lat, 99), server: server, gen: gen, busy: meter.machine(),
			pg: (postgresCPU(b.cluster.Dir) - pg0).Seconds() / capacity, poolWaits: waits1 - waits0}
		perHeartbeat := capacity / float64(max(st.heartbeats, 1)) * 1e6 // µs of the machine per heartbeat
		st.serveUS, st.pgUS = st.server*perHeartbeat, st.pg*perHeartbeat
		results = append(results, st)
		fmt.Fprintln(os.Stderr, "  B15 step:", st)
		if st.saturated(d) {
			break
		}
	}
	carried, knee := 0, 0
	var lines []string
	for _, st := range results {
		if st.ok() && carried == knee {
			carried = st.workers
		}
		if !st.saturated(d) {
			knee = st.workers
		}
		lines = append(lines, st.String())
	}
	notes := fmt.Sprintf("api/client Run workers (heartbeat at the policy's interval, the server coalescing at it), heartbeat interval scaled to %s (the default 5 s ÷ %d; one worker here = %d default workers on the heartbeat path, not in open rows or connections), steps of %s after a settle of %s; the last step that kept pace (≥ 90%% of the heartbeats answered, no error, p99 ≤ 1 s) held %d workers (≈ %d at 5 s); steps: %s",
		b15Interval, b15Scale, b15Scale, d, warmup+2*b15Interval, knee, knee*b15Scale, strings.Join(lines, "; "))
	if e := firstErr.Load(); e != nil {
		notes += "; first worker error: " + e.(string)
	}
	b.report.add(Result{ID: "B15", Figure: "SDK workers carried (default-interval equivalent) with heartbeat p99 ≤ 50 ms, no error",
		Value: float64(carried * b15Scale), Unit: "workers", Target: "report", Pass: carried > 0, Notes: notes})
	return nil
}
