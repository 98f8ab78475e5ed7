package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
)

func TestRunCompletesWithProgress(t *testing.T) {
	e := newEnv(t)
	leaks := goleak.IgnoreCurrent()
	worker := e.client(e.srv.URL, "acme", api.RoleWorker)
	d := newDialer(30*time.Millisecond, 12)
	run, err := worker.Run(context.Background(), "acme", client.RunSpec{TotalCalls: 12}, d.work)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != client.StatusCompleted || run.EndReason != "completed" || run.CompletedCalls != 12 {
		t.Fatalf("final run = %+v", run)
	}
	evs := e.events("acme", run.RunID)
	if count(evs, "RunStarted") != 1 || count(evs, "RunCompleted") != 1 || count(evs, "Heartbeat") == 0 {
		t.Fatalf("log: %+v", evs)
	}
	progressed := false
	for _, ev := range evs {
		var hb struct {
			CompletedCalls int `json:"completed_calls"`
		}
		_ = json.Unmarshal(ev.Data, &hb)
		progressed = progressed || (ev.Type == "Heartbeat" && hb.CompletedCalls > 0 && hb.CompletedCalls < 12)
	}
	if !progressed {
		t.Fatalf("no heartbeat carried intermediate progress: %+v", evs)
	}
	e.noLeaks(leaks, worker)
}

// A user's cancel reaches work's context within one heartbeat interval, and
// the run then ends cancelled. "One interval" is counted in heartbeats, not
// in wall time (a loaded machine stretches both alike): the cancel reaches
// work with the answer to the first heartbeat the server decides after the
// cancel, so at most two heartbeats are answered between the cancel's
// answer and work's cancellation (one in flight, decided before the
// cancel, and the one that carries it).
func TestCancelReachesWorkWithinOneInterval(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL) // forwards all; logs when each heartbeat was answered
	leaks := goleak.IgnoreCurrent()
	worker, user := e.client(proxy.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleUser)
	id := uuid.NewString()
	d := newDialer(20*time.Millisecond, 0)
	done := runAsync(context.Background(), worker, "acme", client.RunSpec{RunID: id, TotalCalls: 1000}, d.work)
	<-d.firstCall
	time.Sleep(3 * interval)

	cancelled, err := user.CancelRun(context.Background(), "acme", id, "user pressed cancel")
	if err != nil || !cancelled.CancelRequested || cancelled.Status != client.StatusRunning {
		t.Fatalf("cancel = %+v, %v", cancelled, err)
	}
	asked := time.Now()
	res := wait(t, done, 5*time.Second)
	at, cause := d.cancellation()
	t.Logf("cancel reached work %s after the cancel was answered (interval %s)", at.Sub(asked), interval)
	if !errors.Is(cause, client.ErrCancelRequested) || !errors.Is(res.err, client.ErrCancelRequested) {
		t.Fatalf("cause %v, Run error %v; want ErrCancelRequested", cause, res.err)
	}
	if n := answeredBetween(proxy.requests("POST heartbeat"), asked, at); n > 2 {
		t.Fatalf("%d heartbeats were answered between the cancel and work's cancellation; want at most 2 (one interval)", n)
	}
	if res.run.Status != client.StatusCancelled || res.run.EndReason != "cancelled" {
		t.Fatalf("final run = %+v", res.run)
	}
	if n := d.callsAfter(at); n != 0 {
		t.Fatalf("%d calls started after the cancel reached work", n)
	}
	proxy.srv.CloseClientConnections() // the proxy's connections are the test's, not Run's
	proxy.tr.CloseIdleConnections()
	e.noLeaks(leaks, worker, user)
}

// The proxy holds every heartbeat, as a network partition would: the worker
// fences itself before the TTL, the reaper then ends the run, and no call is
// started after the RunStaleFailed was stored (the bound asked for is one
// interval after it; the fence comes before it).
func TestReaperEndsRunWhileHeartbeatsAreHeld(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	worker, user := e.client(proxy.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleUser)
	id := uuid.NewString()
	d := newDialer(20*time.Millisecond, 0)
	done := runAsync(context.Background(), worker, "acme", client.RunSpec{RunID: id, TotalCalls: 100000}, d.work)
	<-d.firstCall
	time.Sleep(3 * interval)
	release := make(chan struct{})
	defer close(release)
	proxy.setRule(func(r *http.Request, n int) fault {
		if suffix(r) == "POST heartbeat" {
			return fault{hold: release}
		}
		return fault{}
	})

	res := wait(t, done, ttl+3*time.Second)
	at, cause := d.cancellation()
	if !errors.Is(cause, client.ErrLivenessLost) || !errors.Is(res.err, client.ErrLivenessLost) {
		t.Fatalf("cause %v, Run error %v; want ErrLivenessLost", cause, res.err)
	}
	waitFor(t, ttl+3*time.Second, "the reaper to end the run", func() bool {
		run, err := user.GetRun(context.Background(), "acme", id)
		return err == nil && run.Status == client.StatusFailed && run.EndReason == "stale"
	})
	evs := e.events("acme", id)
	stale, ok := find(evs, "RunStaleFailed")
	if !ok || count(evs, "RunCompleted") != 0 {
		t.Fatalf("log: %+v", evs)
	}
	t.Logf("work fenced %s before the RunStaleFailed was stored", stale.RecordedAt.Sub(at))
	if !at.Before(stale.RecordedAt.Add(interval)) {
		t.Fatalf("work was cancelled at %s, later than one interval after the RunStaleFailed (%s)", at, stale.RecordedAt)
	}
	if n := d.callsAfter(stale.RecordedAt.Add(interval)); n != 0 {
		t.Fatalf("%d calls started after the run was reaped", n)
	}
	if n := d.callsAfter(at); n != 0 {
		t.Fatalf("%d calls started after work was cancelled", n)
	}
}

// Another actor ends the run while the proxy holds the worker's heartbeat;
// the held heartbeat, released, is answered 409 run_ended, and that answer
// is what cancels the work (ErrRunEnded), at once; Run does not complete.
//
// With a sound liveness fence, a forced cancel can only reach a worker that
// has already fenced itself (a forced cancel needs the run silent past the
// TTL, and the worker stops at the TTL minus the margin), so the run is
// ended here by a second worker token completing it, as a duplicate worker
// or an operator's script would.
func TestRunEndedElsewhereFencesOn409(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	worker, other := e.client(proxy.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleWorker)
	id := uuid.NewString()
	const total = 100000
	d := newDialer(20*time.Millisecond, 0)
	done := runAsync(context.Background(), worker, "acme", client.RunSpec{RunID: id, TotalCalls: total}, d.work)
	<-d.firstCall
	time.Sleep(3 * interval)
	release, held := make(chan struct{}), make(chan struct{})
	var first sync.Once
	proxy.setRule(func(r *http.Request, n int) fault {
		if suffix(r) != "POST heartbeat" {
			return fault{}
		}
		f := fault{hold: release}
		first.Do(func() { f.held = held })
		return f
	})
	select {
	case <-held:
	case <-time.After(2 * time.Second):
		t.Fatal("no heartbeat was held")
	}
	if _, err := other.CompleteRun(context.Background(), "acme", id, client.Completion{
		Outcome: client.OutcomeCompleted, CompletedCalls: total}); err != nil {
		t.Fatal(err)
	}
	if at, _ := d.cancellation(); !at.IsZero() {
		t.Fatal("work was cancelled before the 409 could tell it")
	}
	released := time.Now()
	close(release)

	res := wait(t, done, 3*time.Second)
	at, cause := d.cancellation()
	if !errors.Is(cause, client.ErrRunEnded) || !errors.Is(res.err, client.ErrRunEnded) {
		t.Fatalf("cause %v, Run error %v; want ErrRunEnded", cause, res.err)
	}
	hbs := proxy.requests("POST heartbeat")
	last := hbs[len(hbs)-1]
	if last.status != http.StatusConflict {
		t.Fatalf("the released heartbeat was answered %d, want 409", last.status)
	}
	// Measured from the 409's answer (not from the release, which adds the
	// server's handling of the held request): what is left is the SDK's own
	// reaction, which slack bounds; waiting for the next tick would add an
	// interval.
	t.Logf("the 409 reached work %s after the heartbeat was released, %s after its answer", at.Sub(released), at.Sub(last.at))
	if at.Sub(last.at) > slack {
		t.Fatalf("work cancelled %s after the 409 was answered", at.Sub(last.at))
	}
	if n := d.callsAfter(at); n != 0 {
		t.Fatalf("%d calls started after the 409", n)
	}
	if evs := e.events("acme", id); count(evs, "RunCompleted") != 1 {
		t.Fatalf("Run completed a run that had ended: %+v", evs)
	}
	if res.run.Status != client.StatusCompleted || res.run.CompletedCalls != total {
		t.Fatalf("Run returned %+v, want the final state from the 409", res.run)
	}
}

// The server stops for longer than the TTL: the worker stops its work with
// ErrLivenessLost before the TTL has passed since its last sign of life,
// and the restarted server's reaper ends the run.
//
// The fence is timed from the worker's last acknowledged heartbeat (the
// proxy's log), not from the kill: a heartbeat loop slowed by a loaded
// machine acknowledged its last heartbeat well before the kill, and the
// fence, rightly, comes that much earlier. The upper bound is the SDK's
// guarantee itself (its margin absorbs a late timer), so it stays.
func TestServerStoppedFencesWithLivenessLost(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	worker, user := e.client(proxy.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleUser)
	id := uuid.NewString()
	d := newDialer(20*time.Millisecond, 0)
	done := runAsync(context.Background(), worker, "acme", client.RunSpec{RunID: id, TotalCalls: 100000}, d.work)
	<-d.firstCall
	time.Sleep(3 * interval)
	e.srv.Kill()
	killed := time.Now()

	res := wait(t, done, ttl+3*time.Second)
	at, cause := d.cancellation()
	if !errors.Is(cause, client.ErrLivenessLost) || !errors.Is(res.err, client.ErrLivenessLost) {
		t.Fatalf("cause %v, Run error %v; want ErrLivenessLost", cause, res.err)
	}
	t.Logf("work fenced %s after the server was killed (TTL %s, margin %s)", at.Sub(killed), ttl, margin)
	if at.Sub(killed) >= ttl {
		t.Fatalf("work fenced %s after the kill: not before the TTL", at.Sub(killed))
	}
	var lastAck time.Time
	for _, r := range proxy.requests("POST heartbeat") {
		if r.status == http.StatusOK && r.at.After(lastAck) {
			lastAck = r.at
		}
	}
	// The SDK counts the TTL from when it sent that heartbeat, at most a
	// round trip (slack) before its answer.
	if at.Sub(lastAck) < ttl-margin-slack {
		t.Fatalf("work fenced %s after the last acknowledged heartbeat: too early for a TTL of %s and a margin of %s",
			at.Sub(lastAck), ttl, margin)
	}
	if n := d.callsAfter(at); n != 0 {
		t.Fatalf("%d calls started after the fence", n)
	}

	e.srv.Restart()
	var run client.Run
	waitFor(t, ttl+3*time.Second, "the reaper to end the run", func() bool {
		var err error
		run, err = user.GetRun(context.Background(), "acme", id)
		return err == nil && run.Status == client.StatusFailed && run.EndReason == "stale"
	})
	if !at.Before(run.LastHeartbeatAt.Add(ttl)) {
		t.Fatalf("work fenced at %s, after the run's stale time %s", at, run.LastHeartbeatAt.Add(ttl))
	}
}

// The proxy cuts the connection after the server answered the first
// complete: the SDK retries under the same Idempotency-Key, gets the stored
// answer, and the log holds one RunCompleted.
func TestCompleteAnswerDroppedIsRetried(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	proxy.setRule(func(r *http.Request, n int) fault {
		return fault{cut: suffix(r) == "POST complete" && n == 0}
	})
	worker := e.client(proxy.URL, "acme", api.RoleWorker)
	run, err := worker.Run(context.Background(), "acme", client.RunSpec{TotalCalls: 5}, newDialer(10*time.Millisecond, 5).work)
	if err != nil || run.Status != client.StatusCompleted {
		t.Fatalf("Run = %+v, %v", run, err)
	}
	if evs := e.events("acme", run.RunID); count(evs, "RunCompleted") != 1 {
		t.Fatalf("log: %+v", evs)
	}
	completes := proxy.requests("POST complete")
	if len(completes) != 2 || completes[0].key == "" || completes[0].key != completes[1].key {
		t.Fatalf("complete requests: %+v", completes)
	}
	if completes[0].status != 0 || completes[1].status != 200 || !completes[1].replayed {
		t.Fatalf("the retry was not answered from the stored key: %+v", completes)
	}
}

func TestPanicFailsRunAndRepanics(t *testing.T) {
	e := newEnv(t)
	leaks := goleak.IgnoreCurrent()
	worker, user := e.client(e.srv.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleUser)
	id := uuid.NewString()
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		_, _ = worker.Run(context.Background(), "acme", client.RunSpec{RunID: id, TotalCalls: 5}, func(ctx context.Context, p *client.Progress) error {
			p.Add(2, 0)
			panic("dialer exploded")
		})
		t.Error("Run returned instead of re-panicking")
	}()
	if recovered != "dialer exploded" {
		t.Fatalf("recovered %v", recovered)
	}
	var run client.Run
	waitFor(t, 5*time.Second, "the run to read as ended", func() bool {
		run, _ = user.GetRun(context.Background(), "acme", id)
		return run.Ended()
	})
	if run.Status != client.StatusFailed || run.EndReason != "worker_failed" || run.LastError != "panic: dialer exploded" || run.CompletedCalls != 2 {
		t.Fatalf("run after the panic = %+v", run)
	}
	e.noLeaks(leaks, worker, user)
}

// Network errors and 5xx answers are retried (with one Idempotency-Key);
// 4xx answers are not.
func TestTransientFailuresRetriedClientErrorsNot(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	proxy.setRule(func(r *http.Request, n int) fault {
		switch {
		case suffix(r) == "start" && n == 0:
			return fault{status: http.StatusServiceUnavailable, retryAfter: "0"}
		case suffix(r) == "start" && n == 1:
			return fault{cut: true} // the start reached the server; its answer did not come back
		case suffix(r) == "start" && n == 2:
			return fault{status: http.StatusBadGateway}
		}
		return fault{}
	})
	worker := e.client(proxy.URL, "acme", api.RoleWorker)
	run, err := worker.Run(context.Background(), "acme", client.RunSpec{TotalCalls: 2}, newDialer(time.Millisecond, 2).work)
	if err != nil || run.Status != client.StatusCompleted {
		t.Fatalf("Run = %+v, %v", run, err)
	}
	starts := proxy.requests("start")
	if len(starts) != 4 || starts[3].status != http.StatusCreated || !starts[3].replayed {
		t.Fatalf("starts: %+v", starts)
	}
	for _, s := range starts {
		if s.key != starts[0].key || s.key == "" {
			t.Fatalf("the start's retries changed the key: %+v", starts)
		}
	}
	if evs := e.events("acme", run.RunID); count(evs, "RunStarted") != 1 {
		t.Fatalf("log: %+v", evs)
	}

	// 4xx: one attempt each.
	_, err = worker.Run(context.Background(), "acme", client.RunSpec{TotalCalls: -1}, newDialer(time.Millisecond, 0).work)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != client.CodeValidationFailed || apiErr.Fields[0].Field != "total_calls" {
		t.Fatalf("invalid start: %v", err)
	}
	if n := len(proxy.requests("start")); n != 5 {
		t.Fatalf("a 400 was sent %d times", n-4)
	}
	stranger := e.client(proxy.URL, "acme", api.RoleWorker, func(o *client.Options) { o.Token = "not-a-token" })
	before := len(proxy.requests("policy"))
	if _, err := stranger.Run(context.Background(), "acme", client.RunSpec{TotalCalls: 1}, newDialer(time.Millisecond, 1).work); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Fatalf("bad token: %v", err)
	}
	if n := len(proxy.requests("policy")) - before; n != 1 {
		t.Fatalf("a 401 was sent %d times", n)
	}
}

// Pause, as DESIGN's contract has it (pause_requested in heartbeat answers):
// the proxy adds it to the server's answers until the server has pause.
// While paused the dialer places no call and heartbeats go on; a resume lets
// it go on; a cancel of a paused run ends the wait.
func TestPauseStopsDialingAndKeepsHeartbeating(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	var paused atomic.Bool
	proxy.setRule(func(r *http.Request, n int) fault {
		if suffix(r) != "POST heartbeat" {
			return fault{}
		}
		return fault{rewrite: func(raw []byte) []byte {
			var m map[string]any
			if json.Unmarshal(raw, &m) != nil {
				return raw
			}
			m["pause_requested"] = paused.Load()
			out, _ := json.Marshal(m)
			return out
		}}
	})
	worker, user := e.client(proxy.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleUser)
	id := uuid.NewString()
	d := newDialer(20*time.Millisecond, 0)
	done := runAsync(context.Background(), worker, "acme", client.RunSpec{RunID: id, TotalCalls: 100000}, d.work)
	<-d.firstCall

	// Conditions, not durations: the worker has paused once its loop has
	// seen the pause (the call in flight then ended); it then must place no
	// call while three more heartbeats are answered, however long they take.
	pauseFor := func() time.Time {
		d.mu.Lock()
		d.pausedSeen = false
		d.mu.Unlock()
		paused.Store(true)
		waitFor(t, 10*time.Second, "the worker to see the pause", func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.pausedSeen
		})
		stopped := time.Now()
		waitFor(t, 10*time.Second, "three heartbeats while paused", func() bool {
			return answeredBetween(proxy.requests("POST heartbeat"), stopped, time.Now()) >= 3
		})
		if n := d.callsAfter(stopped); n != 0 {
			t.Fatalf("%d calls started while paused", n)
		}
		return stopped
	}
	pauseFor()
	paused.Store(false)
	resumed := time.Now()
	waitFor(t, 10*time.Second, "calls after the resume", func() bool { return d.callsAfter(resumed) > 0 })
	// The resume reaches the worker with the next heartbeat's answer (one
	// in flight may precede it), counted in heartbeats as for the cancel.
	if n := answeredBetween(proxy.requests("POST heartbeat"), resumed, d.firstCallAfter(resumed)); n > 2 {
		t.Fatalf("%d heartbeats were answered between the resume and the first call; want at most 2", n)
	}

	pauseFor()
	if _, err := user.CancelRun(context.Background(), "acme", id, "stop while paused"); err != nil {
		t.Fatal(err)
	}
	res := wait(t, done, 3*time.Second)
	if !errors.Is(res.err, client.ErrCancelRequested) || res.run.Status != client.StatusCancelled {
		t.Fatalf("Run = %+v, %v", res.run, res.err)
	}
}

// The SDK is a client of the HTTP contract only.
func TestClientImportsNoServerPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/runledger/runledger/api/client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/runledger/runledger/") && pkg != "github.com/runledger/runledger/api/client" {
			t.Errorf("api/client depends on %s", pkg)
		}
	}
}

// The caller gives up while the start is in flight: the start is waited
// for, and the run it created is completed (failed), not left behind.
func TestCancelDuringStartLeavesNoRunBehind(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	release, held := make(chan struct{}), make(chan struct{})
	proxy.setRule(func(r *http.Request, n int) fault {
		if suffix(r) == "start" {
			return fault{hold: release, held: held}
		}
		return fault{}
	})
	worker, user := e.client(proxy.URL, "acme", api.RoleWorker), e.client(e.srv.URL, "acme", api.RoleUser)
	ctx, cancel := context.WithCancel(context.Background())
	id := uuid.NewString()
	worked := false
	done := runAsync(ctx, worker, "acme", client.RunSpec{RunID: id, TotalCalls: 5}, func(ctx context.Context, p *client.Progress) error {
		worked = true
		<-ctx.Done()
		return context.Cause(ctx)
	})
	<-held
	cancel()
	time.Sleep(50 * time.Millisecond)
	close(release)
	res := wait(t, done, 5*time.Second)
	if !errors.Is(res.err, context.Canceled) || !worked {
		t.Fatalf("Run = %v (work called: %v)", res.err, worked)
	}
	var run client.Run
	waitFor(t, 5*time.Second, "the run to read as ended", func() bool {
		var err error
		run, err = user.GetRun(context.Background(), "acme", id)
		return err == nil && run.Ended()
	})
	if run.Status != client.StatusFailed || run.EndReason != "worker_failed" || run.LastError != "context canceled" {
		t.Fatalf("run = %+v", run)
	}
}

// answeredBetween counts the requests answered after from and before to.
func answeredBetween(reqs []logged, from, to time.Time) int {
	n := 0
	for _, r := range reqs {
		if r.status != 0 && r.at.After(from) && r.at.Before(to) {
			n++
		}
	}
	return n
}

// firstCallAfter is the start of the first call after t (zero if none).
func (d *dialer) firstCallAfter(t time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.starts {
		if s.After(t) {
			return s
		}
	}
	return time.Time{}
}
