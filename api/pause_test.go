package api_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/reaper"
)

// Pause and resume over HTTP: answers, what the worker is told, repeats,
// ended runs, roles and other businesses.
func TestPauseAndResume(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	id := e.start("acme", 10)
	before := e.state()
	e.must(e.do("POST", b+"/runs/"+id+"/pause", worker, nil), 403, "forbidden") // a worker cannot pause
	for _, role := range []api.Role{api.RoleUser, api.RoleWorker, api.RoleOperator} {
		other := e.token("globex", role)
		e.must(e.do("POST", b+"/runs/"+id+"/pause", other, nil), 404, "not_found")
		e.must(e.do("POST", b+"/runs/"+id+"/resume", other, nil), 404, "not_found")
	}
	e.must(e.do("POST", b+"/runs/"+id+"/pause", user, `{"why":"x"}`), 400, "validation_failed")
	e.must(e.do("POST", b+"/runs/"+id+"/pause", user, map[string]any{"reason": "a\u0000b"}), 400, "validation_failed")
	e.must(e.do("POST", b+"/runs/"+id+"/resume", user, nil), 200, "") // not paused: acknowledged, nothing stored
	e.unchanged(before, "a refused or empty pause/resume changed the log or the read models")

	e.clock.Advance(time.Minute)
	paused := e.must(e.do("POST", b+"/runs/"+id+"/pause", user, map[string]any{"reason": "lunch"}), 200, "")
	if paused.body["paused"] != true || paused.str("pause_reason") != "lunch" || paused.str("paused_at") != "2026-11-28T09:01:00Z" ||
		paused.header.Get("Runledger-Position") == "" {
		t.Fatalf("pause answered %s", paused.raw)
	}
	events := e.eventCount()
	e.must(e.do("POST", b+"/runs/"+id+"/pause", user, map[string]any{"reason": "again"}), 200, "") // harmless
	if e.eventCount() != events {
		t.Fatal("a repeated pause was stored")
	}
	e.clock.Advance(10 * time.Second)
	hb := e.must(e.do("POST", b+"/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 1, "failed_calls": 0}), 200, "")
	if hb.body["pause_requested"] != true || hb.obj("run")["active"] != true {
		t.Fatalf("heartbeat while paused = %s", hb.raw)
	}
	active := e.must(e.do("GET", b+"/runs/active?after="+hb.header.Get("Runledger-Position"), user, nil), 200, "")
	if active.body["paused"] != true {
		t.Fatalf("GET active while paused = %s", active.raw)
	}
	e.must(e.do("POST", b+"/runs/"+id+"/resume", user, nil), 200, "")
	e.clock.Advance(10 * time.Second)
	hb = e.must(e.do("POST", b+"/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 2, "failed_calls": 0}), 200, "")
	if hb.body["pause_requested"] != false || hb.obj("run")["paused"] != false {
		t.Fatalf("heartbeat after resume = %s", hb.raw)
	}
	e.must(e.do("POST", b+"/runs/"+id+"/complete", worker, map[string]any{"outcome": "completed", "completed_calls": 2, "failed_calls": 0}), 200, "")
	for _, path := range []string{"/pause", "/resume"} {
		ended := e.must(e.do("POST", b+"/runs/"+id+path, user, nil), 409, "run_ended")
		if ended.obj("run")["status"] != "completed" {
			t.Fatalf("%s on an ended run: %s", path, ended.raw)
		}
	}
}

// The seed's two rows: a paused run whose last sign of life is 10 minutes
// old is cancelled gracefully; one 60 minutes old, at once.
func TestCancelOfPausedRun(t *testing.T) {
	for _, c := range []struct {
		silent time.Duration
		status int
		want   string
	}{{10 * time.Minute, 202, "running"}, {60 * time.Minute, 200, "cancelled"}} {
		e := newEnv(t)
		user := e.token("acme", api.RoleUser)
		id := e.start("acme", 10)
		e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/pause", user, nil), 200, "")
		e.clock.Advance(c.silent)
		user = e.token("acme", api.RoleUser) // the first has expired by now
		r := e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/cancel", user, nil), c.status, "")
		if r.str("status") != c.want {
			t.Fatalf("cancel after %s of silence while paused = %s", c.silent, r.raw)
		}
	}
}

// A run's own policy, set at start, rules it: a 2m TTL makes it inactive at
// 2m1s and the reaper ends it then, while the service's TTL is 15m; replay
// judges it by the TTL it recorded; a stall is flagged after its stall_after.
func TestRunPolicySetAtStart(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	e.must(e.do("POST", b+"/runs", worker, map[string]any{"total_calls": 5, "worker_id": "w", "stale_after": "30s"}), 400, "validation_failed")
	e.must(e.do("POST", b+"/runs", worker, map[string]any{"total_calls": 5, "worker_id": "w", "stale_after": "soon"}), 400, "validation_failed")
	started := e.must(e.do("POST", b+"/runs", worker, map[string]any{"total_calls": 5, "worker_id": "w",
		"stale_after": "2m", "stall_after": "1m"}), 201, "")
	id := started.str("run_id")
	if started.str("stale_after") != "2m0s" || started.str("stall_after") != "1m0s" || started.str("stale_at") != "2026-11-28T09:02:00Z" {
		t.Fatalf("start = %s", started.raw)
	}
	e.caughtUp()
	e.clock.Advance(70 * time.Second)
	e.must(e.do("POST", b+"/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 0, "failed_calls": 0}), 200, "")
	e.caughtUp()
	stalled := e.must(e.do("GET", b+"/runs/active", user, nil), 200, "")
	if stalled.body["stalled"] != true || stalled.str("stalled_since") != "2026-11-28T09:01:00Z" {
		t.Fatalf("after 70s without progress = %s", stalled.raw)
	}
	e.clock.Advance(2*time.Minute + time.Second) // 2m1s after the last sign of life
	silent := e.must(e.do("GET", b+"/runs/active", user, nil), 404, "no_active_run")
	if detail := silent.str("detail"); !strings.Contains(detail, "(TTL 2m0s)") {
		t.Fatalf("the silent run's detail %q does not name its own TTL", detail)
	}
	r, err := reaper.New(reaper.Config{Runner: e.runner, Interval: time.Second, NoLock: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Sweep(context.Background()); err != nil || res.Reaped != 1 {
		t.Fatalf("sweep at 2m1s = %+v %v", res, err)
	}
	// Replay at start + 3m of a run started with a 2m TTL, which nobody
	// ended, the service at 15m: not active, by the run's own 2m.
	startedAt := e.clock.Now()
	e.must(e.do("POST", "/v1/businesses/globex/runs", e.token("globex", api.RoleWorker),
		map[string]any{"total_calls": 5, "worker_id": "w", "stale_after": "2m"}), 201, "")
	res, err := audit.Replay(context.Background(), e.runner.Store, "globex", startedAt.Add(3*time.Minute), domain.DefaultPolicy())
	if err != nil || res.Status != 404 || res.Active || res.StaleAfter != "2m0s" || res.Run == nil || res.Run.Ended() {
		t.Fatalf("replay at start+3m = %+v %v", res, err)
	}
	if res, _ := audit.Replay(context.Background(), e.runner.Store, "globex", startedAt.Add(time.Minute), domain.DefaultPolicy()); res.Status != 200 {
		t.Fatalf("replay at start+1m = %+v", res)
	}
}
