package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/projections"
)

// openWaitStream opens …/runs/active/stream?wait=true as a user.
func (e *env) openWaitStream(business string) <-chan sse {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/v1/businesses/"+business+"/runs/active/stream?wait=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.token(business, api.RoleUser))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("stream answered %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan sse, 16)
	go readSSE(res.Body, events)
	return events
}

// TestBusinessStream: with ?wait=true the stream outlives runs: it waits
// for a start, follows the run to its end, names an open run that went
// silent and pushes how it ends, and waits again.
func TestBusinessStream(t *testing.T) {
	e := newEnv(t)
	worker := e.token("acme", api.RoleWorker)
	user := e.token("acme", api.RoleUser)
	events := e.openWaitStream("acme")

	expect := func(event string) sse {
		t.Helper()
		ev := nextData(t, events)
		if ev.event != event {
			t.Fatalf("event = %+v, want %s", ev, event)
		}
		return ev
	}
	if w := expect("waiting"); w.run["run"] != nil || w.run["server_time"] == nil {
		t.Fatalf("waiting = %+v, want no run and the server time", w)
	}
	id := e.start("acme", 10)
	if ev := expect("run"); ev.run["run_id"] != id || ev.id == "" {
		t.Fatalf("start = %+v", ev)
	}
	e.clock.Advance(6 * time.Second)
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 4, "failed_calls": 0}), 200, "")
	if ev := expect("run"); ev.run["completed_calls"].(float64) != 4 {
		t.Fatalf("heartbeat = %+v", ev)
	}
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/complete", worker,
		map[string]any{"outcome": "completed", "completed_calls": 10, "failed_calls": 0}), 200, "")
	if ev := expect("ended"); ev.run["status"] != "completed" {
		t.Fatalf("end = %+v", ev)
	}
	expect("waiting") // the stream goes on

	second := e.start("acme", 20)
	if ev := expect("run"); ev.run["run_id"] != second {
		t.Fatalf("second start = %+v", ev)
	}
	e.clock.Advance(16 * time.Minute) // the worker is silent past the TTL
	if ev := expect("inactive"); ev.run["active"] != false {
		t.Fatalf("silence = %+v", ev)
	}
	w := expect("waiting")
	if silent, _ := w.run["run"].(map[string]any); silent == nil || silent["run_id"] != second || silent["active"] != false {
		t.Fatalf("waiting after the silence = %+v, want the silent run named", w)
	}
	// A user cancels the silent run: forced, it ends, and the stream says so.
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+second+"/cancel", user, map[string]any{}), 200, "")
	if ev := expect("ended"); ev.run["run_id"] != second || ev.run["end_reason"] != "cancel_forced" {
		t.Fatalf("the silent run's end = %+v", ev)
	}
	third := e.start("acme", 5)
	if ev := expect("run"); ev.run["run_id"] != third {
		t.Fatalf("third start = %+v", ev)
	}
}

// TestBusinessStreamOption: ?wait= takes true or false; without it the
// stream keeps its contract (404 no_active_run with no active run).
func TestBusinessStreamOption(t *testing.T) {
	e := newEnv(t)
	user := e.token("acme", api.RoleUser)
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream", user, nil), 404, "no_active_run")
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream?wait=false", user, nil), 404, "no_active_run")
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream?wait=yes", user, nil), 400, "validation_failed")
	e.must(e.do("GET", "/v1/businesses/globex/runs/active/stream?wait=true", user, nil), 404, "not_found")
}

// TestBusinessStreamWhileActiveRunsIsBehind: the run ends while active_runs
// (another consumer group) has not applied the end: the stream still goes
// back to waiting, rather than following the ended run again.
func TestBusinessStreamWhileActiveRunsIsBehind(t *testing.T) {
	e := newEnv(t)
	e.stopProjector()
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	runProjector := func(names ...string) (stop func()) {
		subscribed := make(chan struct{})
		proj, err := projections.NewProjector(e.pool, projections.Options{Projections: names, Feed: e.feed, OnSubscribed: func() { close(subscribed) },
			PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- proj.Run(ctx) }()
		<-subscribed
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	stopActive := runProjector(projections.ActiveRuns)
	runProjector(projections.Runs)
	events := e.openWaitStream("acme")
	if ev := nextData(t, events); ev.event != "waiting" {
		t.Fatalf("first event %+v, want waiting", ev)
	}
	id := e.must(e.do("POST", "/v1/businesses/acme/runs", worker, map[string]any{"total_calls": 10, "worker_id": "w1"}), 201, "").str("run_id")
	if ev := nextData(t, events); ev.event != "run" || ev.run["run_id"] != id {
		t.Fatalf("event %+v, want the start", ev)
	}
	waitStatus(t, e, "/v1/businesses/acme/runs/active", user, 200) // active_runs has the run
	stopActive()                                                   // … and will not learn of its end
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/complete", worker,
		map[string]any{"outcome": "completed", "completed_calls": 10, "failed_calls": 0}), 200, "")
	if ev := nextData(t, events); ev.event != "ended" {
		t.Fatalf("event %+v, want ended", ev)
	}
	if ev := nextData(t, events); ev.event != "waiting" || ev.run["run"] != nil {
		t.Fatalf("event %+v, want waiting with no run", ev)
	}
}
