package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runledger/runledger/api"
)

// b14: idle pages. 2,000 watchers, each on a business of its own with no
// run, speaking the page's own protocol (watcher.js with waitForStart: GET
// …/runs/active/stream?wait=true, reconnecting if it closes) beside a load
// of runs heartbeating once a second on other businesses: what the idle
// watchers cost the database (queries/s ÷ the same load without them), the
// requests they make, the server's memory; then runs start on some of the
// idle businesses, and how long each start takes to reach its watcher.
func (b *bench) b14(ctx context.Context) error {
	srv, pool, err := b.serveCountingStatements(ctx, "bench_b14")
	if err != nil {
		return err
	}
	defer pool.Close()
	defer srv.stop()
	runs, err := b.startHTTPRuns(srv, "b14-busy-", b.sizes.B14Busy, 16)
	if err != nil {
		return err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var load sync.WaitGroup
	for i, r := range runs {
		load.Add(1)
		go func() {
			defer load.Done()
			time.Sleep(time.Duration(i) * time.Second / time.Duration(len(runs)))
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-tick.C:
				}
				_, _ = call("POST", srv.url+"/v1/businesses/"+r.business+"/runs/"+r.id+"/heartbeat", r.worker,
					map[string]any{"completed_calls": r.calls.Add(1), "failed_calls": 0}, nil)
			}
		}()
	}
	d := b.sizes.B14Duration
	time.Sleep(warmup)
	qpsNone, err := queriesPerSecond(ctx, pool, d)
	if err != nil {
		return err
	}
	idle := &idlePages{started: map[string]time.Time{}}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := idle.connect(watchCtx, b, srv, b.sizes.B14Watchers); err != nil {
		return err
	}
	time.Sleep(warmup)
	before := idle.requests.Load()
	meter := meterCPU(srv)
	start := time.Now()
	qpsIdle, err := queriesPerSecond(ctx, pool, d)
	if err != nil {
		return err
	}
	reqPerMin := float64(idle.requests.Load()-before) / time.Since(start).Minutes() / float64(b.sizes.B14Watchers)
	gen, server := meter.shares()
	busy := meter.machine()
	_, rss := srv.memory()

	// Starts on idle businesses, one every 20 ms: from the start's answer to its watcher's "run".
	for i := 0; i < b.sizes.B14Starts; i++ {
		business := idleBusiness(i * (b.sizes.B14Watchers / b.sizes.B14Starts))
		var out struct {
			RunID string `json:"run_id"`
		}
		status, err := call("POST", srv.url+"/v1/businesses/"+business+"/runs", b.token(business, api.RoleWorker),
			map[string]any{"total_calls": 10, "worker_id": "bench"}, &out)
		if err != nil || status != 201 {
			return fmt.Errorf("start on %s: %d %v", business, status, err)
		}
		idle.answered(out.RunID, time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	lat := idle.waitLatencies(b.sizes.B14Starts, 10*time.Second)
	connected := idle.open.Load()
	// The same load once more without the watchers: the baseline is the
	// mean of before and after, so that a drift of the load over the run
	// is not counted for or against them.
	stopWatch()
	time.Sleep(warmup)
	qpsAfter, err := queriesPerSecond(ctx, pool, d)
	if err != nil {
		return err
	}
	stopLoad()
	load.Wait()
	qpsNone = (qpsNone + qpsAfter) / 2
	sortDurations(lat)
	p99 := percentile(lat, 99)
	notes := fmt.Sprintf("%d idle watchers (one business each, no run: GET …/runs/active/stream?wait=true as watcher.js does) beside %d runs heartbeating 1/s on other businesses, over %s (baseline: the same load without them, before and after, averaged); %d connected after the starts",
		b.sizes.B14Watchers, len(runs), d, connected)
	b.report.add(Result{ID: "B14", Figure: "database queries/s with 2,000 idle pages", Value: qpsIdle, Unit: "/s",
		Baseline: "/s without them", BaselineValue: qpsNone, Target: "ratio ≤ 1.1", Pass: qpsIdle/qpsNone <= 1.1,
		GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy, Notes: notes})
	b.report.add(Result{ID: "B14", Figure: "requests per idle page per minute", Value: reqPerMin, Unit: "/min",
		Target: "≤ 1", Pass: reqPerMin <= 1, Notes: "requests the idle watchers started while measured (the stream they hold open counts once, when opened)"})
	b.report.add(Result{ID: "B14", Figure: "server resident set with 2,000 idle pages", Value: float64(rss) / (1 << 20), Unit: "MiB",
		Target: "reported", Pass: true, ServerCPU: server})
	b.report.add(Result{ID: "B14", Figure: "start → idle page's event p99", Value: ms(p99), Unit: "ms", Target: "≤ 250 ms", Pass: len(lat) == b.sizes.B14Starts && ms(p99) <= 250,
		Notes: fmt.Sprintf("%d of %d starts reached their watcher; p50 %.1f ms; from the start's HTTP answer to the watcher's receipt of its run event", len(lat), b.sizes.B14Starts, ms(percentile(lat, 50)))})
	return nil
}

func idleBusiness(i int) string { return fmt.Sprintf("b14-idle-%05d", i) }

// idlePages are B14's watchers.
type idlePages struct {
	requests atomic.Int64 // requests started (a stream opened or reopened)
	open     atomic.Int64 // streams open now

	mu       sync.Mutex
	started  map[string]time.Time // run id → when its start was answered
	received []time.Duration
}

// connect connects n watchers, 64 at a time, and keeps each connected until ctx ends.
func (p *idlePages) connect(ctx context.Context, b *bench, srv *served, n int) error {
	connected := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		business := idleBusiness(i)
		token := b.token(business, api.RoleUser)
		sem <- struct{}{}
		go func() {
			first := true
			for ctx.Err() == nil {
				err := p.watch(ctx, srv, business, token, func() {
					if first {
						first = false
						<-sem
						connected <- nil
					}
				})
				if first {
					<-sem
					connected <- err
					return
				}
				select { // the page's backoff before it reconnects
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-connected; err != nil {
			return err
		}
	}
	return nil
}

// watch holds one stream until it ends, noting run events.
func (p *idlePages) watch(ctx context.Context, srv *served, business, token string, up func()) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.url+"/v1/businesses/"+business+"/runs/active/stream?wait=true", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	p.requests.Add(1)
	res, err := streamClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("stream of %s: %s", business, res.Status)
	}
	p.open.Add(1)
	defer p.open.Add(-1)
	up()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "run":
			now := time.Now()
			var run struct {
				RunID string `json:"run_id"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &run) == nil {
				p.got(run.RunID, now)
			}
		case line == "":
			event = ""
		}
	}
	return nil
}

// answered records when a start was answered; got, when its run reached the watcher.
func (p *idlePages) answered(runID string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seen, ok := p.started["seen:"+runID]; ok { // the event came first
		p.received = append(p.received, max(0, seen.Sub(at)))
		return
	}
	p.started[runID] = at
}

func (p *idlePages) got(runID string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if start, ok := p.started[runID]; ok {
		delete(p.started, runID)
		p.received = append(p.received, max(0, at.Sub(start)))
		return
	}
	if _, ok := p.started["seen:"+runID]; !ok {
		p.started["seen:"+runID] = at
	}
}

// waitLatencies waits until n starts reached their watchers (at most timeout).
func (p *idlePages) waitLatencies(n int, timeout time.Duration) []time.Duration {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		got := len(p.received)
		p.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.received...)
}
