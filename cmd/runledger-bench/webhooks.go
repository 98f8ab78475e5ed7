package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/runledger/runledger/api"
)

// webhookFarm is the healthy receivers of B13: one local HTTP server whose
// paths stand for the endpoints; it answers 204 at once and keeps the first
// receipt of each webhook-id.
type webhookFarm struct {
	srv      *http.Server
	url      string
	mu       sync.Mutex
	first    map[string]time.Time // webhook-id → first receipt
	position map[string]int64     // webhook-id → the event's log position
	requests int
}

func newWebhookFarm() (*webhookFarm, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &webhookFarm{url: "http://" + l.Addr().String(), first: map[string]time.Time{}, position: map[string]int64{}}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(l) }()
	return f, nil
}

func (f *webhookFarm) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var p struct {
		Data struct {
			Position int64 `json:"position"`
		} `json:"data"`
	}
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &p)
	id := r.Header.Get("webhook-id")
	f.mu.Lock()
	f.requests++
	if _, seen := f.first[id]; !seen {
		f.first[id], f.position[id] = now, p.Data.Position
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// receivedOf counts the deliveries received of the events at positions.
func (f *webhookFarm) receivedOf(positions map[int64]time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for id := range f.first {
		if _, ok := positions[f.position[id]]; ok {
			n++
		}
	}
	return n
}

// latencies returns, sorted, the time from each event's append to each
// first receipt of it, and the last of those receipts.
func (f *webhookFarm) latencies(appended map[int64]time.Time) ([]time.Duration, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		out  []time.Duration
		last time.Time
	)
	for id, at := range f.first {
		a, ok := appended[f.position[id]]
		if !ok {
			continue
		}
		out = append(out, at.Sub(a))
		if at.After(last) {
			last = at
		}
	}
	sortDurations(out)
	return out, last
}

func (f *webhookFarm) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// b13: endpoints × events with healthy receivers, in two phases on one
// serve process. Throughput: the events appended one after another as fast
// as the API answers (a burst that asks for far more deliveries per second
// than two cores can send), so its figure is the deliveries per second a
// replica makes at saturation, and its append → receipt times measure the
// backlog. Latency: then events paced at half of that capacity (a replica
// at 50% utilisation: a steady load it carries with room to spare), whose
// append → receipt p99 is the target's.
func (b *bench) b13(ctx context.Context) error {
	url, pool, err := b.database(ctx, "bench_b13")
	if err != nil {
		return err
	}
	defer pool.Close()
	srv, err := startServe(ctx, b.bin, url, "RUNLEDGER_WEBHOOK_ALLOW_PRIVATE=true", "RUNLEDGER_WEBHOOK_ALLOW_INSECURE=true",
		"RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s")
	if err != nil {
		return err
	}
	defer srv.stop()
	farm, err := newWebhookFarm()
	if err != nil {
		return err
	}
	defer farm.srv.Close()
	w := &webhookLoad{b: b, farm: farm, endpoints: b.sizes.B13Endpoints, base: srv.url + "/v1/businesses/b13",
		user: b.token("b13", api.RoleUser), worker: b.token("b13", api.RoleWorker)}
	if err := w.register(); err != nil {
		return err
	}

	meter := meterCPU(srv)
	burst, err := w.phase(ctx, b.sizes.B13Events, 0, 0)
	if err != nil {
		return err
	}
	gen, server := meter.shares()
	busy := meter.machine()
	rate := float64(burst.received) / burst.span.Seconds()
	notes := fmt.Sprintf("%d endpoints × %d events (4 per run, appended one after another in %s, %.0f events/s): %d of %d deliveries received in %s (%d requests in all); append → receipt (the backlog) p50 %.0f ms, p99 %.0f ms",
		w.endpoints, burst.events, burst.appendedIn.Round(time.Millisecond), float64(burst.events)/burst.appendedIn.Seconds(),
		burst.received, burst.want, burst.span.Round(time.Millisecond), farm.requestCount(), ms(burst.p50), ms(burst.p99))
	b.report.add(Result{ID: "B13", Figure: "webhook deliveries per second (healthy receivers, burst)", Value: rate, Unit: "deliveries/s",
		Baseline: "events/s appended", BaselineValue: float64(burst.events) / burst.appendedIn.Seconds(), Target: "information",
		Pass: burst.received == burst.want, GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy, Notes: notes})

	// Half the measured capacity, in events per second (each event is a
	// delivery to every endpoint), for the latency phase's duration.
	pace := rate / 2 / float64(w.endpoints)
	steady, err := w.phase(ctx, 0, pace, b.sizes.B13Steady)
	if err != nil {
		return err
	}
	notes = fmt.Sprintf("events paced at %.1f/s for %s (half the burst's %.0f deliveries/s over %d endpoints): %d of %d deliveries received; append → receipt p50 %.0f ms, p99 %.0f ms, max %.0f ms",
		pace, b.sizes.B13Steady, rate, w.endpoints, steady.received, steady.want, ms(steady.p50), ms(steady.p99), ms(steady.max))
	b.report.add(Result{ID: "B13", Figure: "append → receipt p99 at half capacity", Value: ms(steady.p99), Unit: "ms", Baseline: "ms p50", BaselineValue: ms(steady.p50),
		Target: "≤ 1000 ms", Pass: steady.received == steady.want && steady.p99 <= time.Second, Notes: notes})
	return nil
}

// webhookLoad appends B13's runs to one business whose endpoints all
// point at farm.
type webhookLoad struct {
	b                  *bench
	farm               *webhookFarm
	endpoints          int
	base, user, worker string
}

func (w *webhookLoad) register() error {
	for i := range w.endpoints {
		if err := registerEndpoint(w.base, w.user, w.farm.url+"/e/"+strconv.Itoa(i), "run.started", "run.paused", "run.resumed", "run.completed"); err != nil {
			return fmt.Errorf("endpoint %d: %w", i, err)
		}
	}
	return nil
}

// registerEndpoint registers a webhook endpoint at url for events on the
// business whose API base is base, with a user's token.
func registerEndpoint(base, user, url string, events ...string) error {
	code, err := call("POST", base+"/webhooks", user, map[string]any{"url": url, "events": events}, nil)
	if err != nil || code != http.StatusCreated {
		return fmt.Errorf("register a webhook endpoint: %d %v", code, err)
	}
	return nil
}

// phaseResult is what one phase's events became at the receivers.
type phaseResult struct {
	events, want, received int
	appendedIn, span       time.Duration // appending; from the first append to the last receipt
	p50, p99, max          time.Duration // append → first receipt
}

// phase appends runs (four subscribed events each: start, pause, resume,
// complete) until it has appended events, or, with events 0, for d at pace
// events per second; then waits for their deliveries and measures them.
func (w *webhookLoad) phase(ctx context.Context, events int, pace float64, d time.Duration) (phaseResult, error) {
	appended := map[int64]time.Time{}
	began := time.Now()
	more := func() bool {
		if events > 0 {
			return len(appended) < events
		}
		return time.Since(began) < d
	}
	for more() && ctx.Err() == nil {
		positions, err := w.run(func(i int) {
			if pace > 0 { // open loop: the schedule does not wait for answers
				time.Sleep(time.Until(began.Add(time.Duration(float64(len(appended)+i) / pace * float64(time.Second)))))
			}
		})
		if err != nil {
			return phaseResult{}, err
		}
		for pos, at := range positions {
			appended[pos] = at
		}
	}
	res := phaseResult{events: len(appended), want: len(appended) * w.endpoints, appendedIn: time.Since(began)}
	deadline := time.Now().Add(10 * time.Minute)
	for w.farm.receivedOf(appended) < res.want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	latencies, last := w.farm.latencies(appended)
	res.received, res.span = len(latencies), last.Sub(began)
	res.p50, res.p99, res.max = percentile(latencies, 50), percentile(latencies, 99), percentile(latencies, 100)
	return res, nil
}

// run appends one run's four events, calling before(i) ahead of the i-th,
// and returns each event's position with the time its command was answered.
func (w *webhookLoad) run(before func(i int)) (map[int64]time.Time, error) {
	steps := []struct {
		path string
		body map[string]any
		tok  string
	}{
		{"/runs", map[string]any{"total_calls": 1, "worker_id": "w"}, w.worker},
		{"/pause", map[string]any{}, w.user},
		{"/resume", map[string]any{}, w.user},
		{"/complete", map[string]any{"outcome": "completed", "completed_calls": 1, "failed_calls": 0}, w.worker},
	}
	var answer struct {
		RunID    string `json:"run_id"`
		Position int64  `json:"position"`
	}
	out, run := map[int64]time.Time{}, ""
	for i, s := range steps {
		before(i)
		path := w.base + s.path
		if run != "" {
			path = w.base + "/runs/" + run + s.path
		}
		code, err := call("POST", path, s.tok, s.body, &answer)
		if err != nil || code >= 300 {
			return nil, fmt.Errorf("%s: %d %v", s.path, code, err)
		}
		out[answer.Position] = time.Now()
		if run == "" {
			run = answer.RunID
		}
	}
	return out, nil
}

// configureWebhooks registers, for each business of runs, one endpoint
// subscribed to every event type, answered by a healthy farm: B1 with
// webhooks configured (BENCH_B1_WEBHOOKS), where no heartbeat may cost a
// delivery or a read of the webhooks group.
func configureWebhooks(srv *served, runs []*httpRun) (*webhookFarm, error) {
	farm, err := newWebhookFarm()
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, r := range runs {
		if done[r.business] {
			continue
		}
		done[r.business] = true
		if err := registerEndpoint(srv.url+"/v1/businesses/"+r.business, r.user, farm.url+"/"+r.business,
			"run.started", "run.completed", "run.failed", "run.cancelled", "run.paused", "run.resumed"); err != nil {
			farm.srv.Close()
			return nil, fmt.Errorf("%s: %w", r.business, err)
		}
	}
	return farm, nil
}
