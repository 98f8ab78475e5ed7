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

func (f *webhookFarm) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.first)
}

// b13: endpoints × events with healthy receivers: how many deliveries a
// serve process makes per second, and the time from an event's append (its
// command's answer) to each receipt.
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
	endpoints, events := b.sizes.B13Endpoints, b.sizes.B13Events
	const business = "b13"
	user, worker := b.token(business, api.RoleUser), b.token(business, api.RoleWorker)
	base := srv.url + "/v1/businesses/" + business
	for i := range endpoints {
		if code, err := call("POST", base+"/webhooks", user, map[string]any{"url": farm.url + "/e/" + strconv.Itoa(i),
			"events": []string{"run.started", "run.paused", "run.resumed", "run.completed"}}, nil); err != nil || code != http.StatusCreated {
			return fmt.Errorf("register endpoint %d: %d %v", i, code, err)
		}
	}
	// One run after another, four subscribed events each (start, pause,
	// resume, complete), as fast as the API answers.
	appended := map[int64]time.Time{}
	meter := meterCPU(srv)
	began := time.Now()
	var answer struct {
		RunID    string `json:"run_id"`
		Position int64  `json:"position"`
	}
	for len(appended) < events {
		steps := []struct {
			path string
			body map[string]any
			tok  string
		}{
			{"/runs", map[string]any{"total_calls": 1, "worker_id": "w"}, worker},
			{"/pause", map[string]any{}, user},
			{"/resume", map[string]any{}, user},
			{"/complete", map[string]any{"outcome": "completed", "completed_calls": 1, "failed_calls": 0}, worker},
		}
		run := ""
		for _, s := range steps {
			path := base + s.path
			if run != "" {
				path = base + "/runs/" + run + s.path
			}
			code, err := call("POST", path, s.tok, s.body, &answer)
			if err != nil || code >= 300 {
				return fmt.Errorf("%s: %d %v", s.path, code, err)
			}
			appended[answer.Position] = time.Now()
			if run == "" {
				run = answer.RunID
			}
		}
	}
	appendedIn := time.Since(began)
	want := len(appended) * endpoints
	deadline := time.Now().Add(10 * time.Minute)
	for farm.received() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	gen, server := meter.shares()
	busy := meter.machine()
	farm.mu.Lock()
	defer farm.mu.Unlock()
	var latencies []time.Duration
	var last time.Time
	for id, at := range farm.first {
		if a, ok := appended[farm.position[id]]; ok {
			latencies = append(latencies, at.Sub(a))
		}
		if at.After(last) {
			last = at
		}
	}
	sortDurations(latencies)
	span := last.Sub(began)
	rate := float64(len(farm.first)) / span.Seconds()
	p50, p99 := percentile(latencies, 50), percentile(latencies, 99)
	notes := fmt.Sprintf("%d endpoints × %d events (4 per run, appended one after another in %s, %.0f events/s): %d of %d deliveries received in %s (%d requests); append → receipt p50 %.0f ms, p99 %.0f ms, max %.0f ms",
		endpoints, len(appended), appendedIn.Round(time.Millisecond), float64(len(appended))/appendedIn.Seconds(),
		len(farm.first), want, span.Round(time.Millisecond), farm.requests, ms(p50), ms(p99), ms(percentile(latencies, 100)))
	b.report.add(Result{ID: "B13", Figure: "webhook deliveries per second (healthy receivers)", Value: rate, Unit: "deliveries/s",
		Baseline: "events/s appended", BaselineValue: float64(len(appended)) / appendedIn.Seconds(), Target: "information",
		Pass: len(farm.first) == want, GeneratorCPU: gen, ServerCPU: server, MachineCPU: busy, Notes: notes})
	b.report.add(Result{ID: "B13", Figure: "append → receipt p99", Value: ms(p99), Unit: "ms", Baseline: "ms p50", BaselineValue: ms(p50),
		Target: "≤ 1000 ms", Pass: len(farm.first) == want && p99 <= time.Second, Notes: notes})
	return nil
}
