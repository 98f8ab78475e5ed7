package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
)

// b9: B9Watchers SSE watchers (10,000 in the full bench: 20 on each of 500
// businesses) while each business's run heartbeats once a second: how long
// a change takes from the heartbeat's answer to every watcher, and what the
// watchers cost the database (queries per second with them ÷ without), the
// server's memory and CPU.
func (b *bench) b9(ctx context.Context) error {
	watchers := b.sizes.B9Watchers
	if n, err := strconv.Atoi(os.Getenv("BENCH_B9_WATCHERS")); err == nil && n > 0 {
		watchers = n
	}
	per := max(1, watchers/b.sizes.B9Businesses)
	if err := enoughFiles(per * b.sizes.B9Businesses); err != nil {
		return err
	}
	// serve's stream cap (5,000 by default) must not refuse the watchers.
	srv, pool, err := b.serveCountingStatements(ctx, "bench_b9", fmt.Sprintf("RUNLEDGER_MAX_STREAMS=%d", per*b.sizes.B9Businesses+100))
	if err != nil {
		return err
	}
	defer pool.Close()
	defer srv.stop()
	runs, err := b.startHTTPRuns(srv, "b9-", b.sizes.B9Businesses, 16)
	if err != nil {
		return err
	}
	var answered sync.Map // log position → when its heartbeat was answered
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var load sync.WaitGroup
	for i, r := range runs {
		load.Add(1)
		go func() {
			defer load.Done()
			// Spread the heartbeats over each second, as independent workers'
			// are: the ticker starts after the pause, or every run would tick
			// at the same instant.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(len(runs)))
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-tick.C:
				}
				var hb struct {
					Position int64 `json:"position"`
				}
				if status, err := call("POST", srv.url+"/v1/businesses/"+r.business+"/runs/"+r.id+"/heartbeat", r.worker,
					map[string]any{"completed_calls": r.calls.Add(1), "failed_calls": 0}, &hb); err == nil && status == 200 {
					answered.Store(hb.Position, time.Now())
				}
			}
		}()
	}
	d := b.sizes.B9Duration
	time.Sleep(warmup)
	qpsNone, err := queriesPerSecond(ctx, pool, d)
	if err != nil {
		return err
	}
	w := newWatchers()
	if err := w.connect(b, srv, runs, per); err != nil {
		return err
	}
	defer w.close()
	time.Sleep(warmup)
	w.measuring.Store(true)
	meter := meterCPU(srv)
	qpsWatched, err := queriesPerSecond(ctx, pool, d)
	if err != nil {
		return err
	}
	w.measuring.Store(false)
	gen, server := meter.shares()
	busy := meter.machine()
	_, rss := srv.memory()
	saveHeap() // BENCH_B9_HEAP: serve's heap with the watchers connected
	stopLoad()
	load.Wait()
	lat := w.latencies(&answered)
	sortDurations(lat)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	n := humanCount(w.count())
	notes := fmt.Sprintf("%d watchers on %d businesses, each run heartbeating 1/s (every heartbeat stored); %d deliveries measured over %s, from the heartbeat's HTTP answer to the watcher's receipt (a watcher told before the worker read its answer counts 0); %d watchers connected at the end",
		w.count(), len(runs), len(lat), d, w.open())
	b.report.add(Result{ID: "B9", Figure: "SSE delivery p50, " + n + " watchers", Value: ms(p50), Unit: "ms", Target: "≤ 50 ms", Pass: ms(p50) <= 50,
		GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy, Notes: notes})
	b.report.add(Result{ID: "B9", Figure: "SSE delivery p99, " + n + " watchers", Value: ms(p99), Unit: "ms", Target: "≤ 250 ms", Pass: ms(p99) <= 250,
		GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy})
	b.report.add(Result{ID: "B9", Figure: "database queries/s with " + n + " watchers", Value: qpsWatched, Unit: "/s",
		Baseline: "/s without watchers", BaselineValue: qpsNone, Target: "ratio ≤ 1.1", Pass: qpsWatched/qpsNone <= 1.1,
		Notes: "statements executed in the service's database per second (pg_stat_statements), same heartbeat load"})
	b.report.add(Result{ID: "B9", Figure: "server resident set with " + n + " watchers", Value: float64(rss) / (1 << 20), Unit: "MiB",
		Target: "≤ 400 MB", Pass: float64(rss) <= 400e6, ServerCPU: server})
	return nil
}

// humanCount writes n with thousands separators (10,000).
func humanCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// enoughFiles checks that this process may open a descriptor for each of
// the watchers' connections (Go raises the soft RLIMIT_NOFILE to the hard
// one at start, for serve too); beyond the hard limit it tells how to raise it.
func enoughFiles(conns int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if need := uint64(conns) + 1000; lim.Cur < need {
		return fmt.Errorf("%d watchers need about %d open files, the limit is %d (hard %d): raise it (ulimit -n)", conns, need, lim.Cur, lim.Max)
	}
	return nil
}

// queriesPerSecond counts the statements the database ran over d.
func queriesPerSecond(ctx context.Context, pool *pgxpool.Pool, d time.Duration) (float64, error) {
	count := func() (float64, error) {
		var n float64
		err := pool.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
		return n, err
	}
	before, err := count()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	time.Sleep(d)
	after, err := count()
	return (after - before) / time.Since(start).Seconds(), err
}

// watchers are the SSE clients of B9.
type watchers struct {
	mu        sync.Mutex
	received  []receipt
	bodies    []*http.Response
	measuring atomic.Bool
	connected int
	live      int
}

type receipt struct {
	position int64
	at       time.Time
}

func newWatchers() *watchers { return &watchers{} }

// connect opens per watchers streams on each run's business, in parallel,
// each with a token of its own (serve caps the streams of one token).
func (w *watchers) connect(b *bench, srv *served, runs []*httpRun, per int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(runs)*per)
	sem := make(chan struct{}, 64)
	for _, r := range runs {
		for i := 0; i < per; i++ {
			token, err := b.auth.Mint(r.business, api.RoleUser, 24*time.Hour+time.Duration(i)*time.Second) // distinct expiries, distinct tokens
			if err != nil {
				return err
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				req, _ := http.NewRequest("GET", srv.url+"/v1/businesses/"+r.business+"/runs/active/stream", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := streamClient.Do(req)
				if err != nil || res.StatusCode != 200 {
					errs <- fmt.Errorf("stream of %s: %v %v", r.business, res, err)
					return
				}
				w.mu.Lock()
				w.bodies = append(w.bodies, res)
				w.connected++
				w.live++
				w.mu.Unlock()
				go w.read(res)
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// streamClient keeps thousands of streams open to one host.
var streamClient = &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 16}}

func (w *watchers) read(res *http.Response) {
	defer func() { w.mu.Lock(); w.live--; w.mu.Unlock() }()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok && w.measuring.Load() {
			pos, _ := strconv.ParseInt(id, 10, 64)
			now := time.Now()
			w.mu.Lock()
			w.received = append(w.received, receipt{pos, now})
			w.mu.Unlock()
		}
	}
}

// latencies matches each receipt with its heartbeat's answer.
func (w *watchers) latencies(answered *sync.Map) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, r := range w.received {
		if at, ok := answered.Load(r.position); ok {
			out = append(out, max(0, r.at.Sub(at.(time.Time))))
		}
	}
	return out
}

func (w *watchers) count() int { w.mu.Lock(); defer w.mu.Unlock(); return w.connected }
func (w *watchers) open() int  { w.mu.Lock(); defer w.mu.Unlock(); return w.live }

func (w *watchers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.bodies {
		b.Body.Close()
	}
}

// saveHeap writes serve's heap profile (pprof on SERVE_DEBUG_ADDR) to the
// file BENCH_B9_HEAP names, beside it (.txt) the text form that ends with
// runtime.MemStats (stacks, heap in use, idle and released), and
// (.goroutine.txt) the goroutines grouped by stack; without both it does
// nothing.
func saveHeap() {
	path, addr := os.Getenv("BENCH_B9_HEAP"), os.Getenv("SERVE_DEBUG_ADDR")
	if path == "" || addr == "" {
		return
	}
	for _, f := range []struct{ query, file string }{{"heap", path}, {"heap?debug=1", path + ".txt"}, {"goroutine?debug=1", path + ".goroutine.txt"}} {
		res, err := client.Get("http://" + addr + "/debug/pprof/" + f.query)
		if err != nil {
			fmt.Fprintln(os.Stderr, "heap profile:", err)
			return
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			err = os.WriteFile(f.file, raw, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "heap profile:", err)
			return
		}
	}
}

// serveCountingStatements starts serve (heartbeats stored every time) on a
// fresh database name with pg_stat_statements, for workloads that count the
// statements the service runs; the caller closes the pool and stops serve.
func (b *bench) serveCountingStatements(ctx context.Context, name string, env ...string) (*served, *pgxpool.Pool, error) {
	url, pool, err := b.database(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		pool.Close()
		return nil, nil, err
	}
	srv, err := startServe(ctx, b.bin, url, append([]string{"RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s"}, env...)...)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return srv, pool, nil
}
