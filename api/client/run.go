package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// RunSpec describes the run to start.
type RunSpec struct {
	// RunID is the run's id (a UUID); empty means a new one, chosen here so
	// that a retried start is recognised by the server.
	RunID string
	// TotalCalls is the number of calls the run will place.
	TotalCalls int
	// WorkerID names the worker (default Options.WorkerID).
	WorkerID string
	// StaleAfter and StallAfter are the run's own policy (1m-24h), sent in
	// the start only when set; zero means the service's.
	StaleAfter, StallAfter time.Duration
}

// WorkFunc is a run's work. It reports progress through p and must return
// soon after ctx is done; context.Cause(ctx) says why: ErrCancelRequested,
// ErrRunEnded, ErrLivenessLost, or the cause of the ctx given to Run.
type WorkFunc func(ctx context.Context, p *Progress) error

// Run starts a run of business and calls work, and makes sure the run does
// not outlive it: the run is completed when work returns, or work is stopped
// when the run can no longer be its own.
//
//   - The run id is chosen here, and the start is retried under one
//     Idempotency-Key: a retried start is recognised (201 or 200 is success).
//   - A goroutine heartbeats with the counts work sets through p, every
//     interval (see pace: the server's heartbeat_min_interval, at most a
//     tenth of the TTL), until work returns.
//   - When work returns nil the run is completed; an error fails it with the
//     error's message; a panic fails it with the panic's message, and then
//     the panic continues (Run re-panics with the same value). If the ctx
//     given to Run ends, work's ctx ends too and the run is completed as work
//     reports (a failure carrying the error work returns).
//   - A cancel request in a heartbeat's answer cancels work's context with
//     cause ErrCancelRequested; once work returns the run is completed as
//     cancelled.
//   - Fencing: a heartbeat answered 409 run_ended cancels work's context at
//     once with ErrRunEnded, and no acknowledged heartbeat for the TTL minus
//     a margin (max(2 intervals, TTL/10)) cancels it with ErrLivenessLost,
//     before the reaper could end the run. In both cases Run does not
//     complete the run.
//   - complete is retried under one Idempotency-Key, so a retry whose first
//     answer was lost gets that answer.
//
// Every goroutine Run starts has stopped when it returns. Run returns the
// run as last seen and nil if the run completed as work asked; otherwise an
// error: the start's (*Error, e.g. active_run_exists), work's error, one that
// wraps ErrCancelRequested, ErrRunEnded or ErrLivenessLost, or the
// complete's.
func (c *Client) Run(ctx context.Context, business string, spec RunSpec, work WorkFunc) (Run, error) {
	if spec.RunID == "" {
		spec.RunID = uuid.Must(uuid.NewV7()).String()
	}
	if spec.WorkerID == "" {
		spec.WorkerID = c.opts.WorkerID
	}
	policy, err := c.Policy(ctx)
	if err != nil {
		return Run{}, fmt.Errorf("read the policy: %w", err)
	}
	ttl := time.Duration(policy.StaleAfter)
	if spec.StaleAfter > 0 {
		ttl = spec.StaleAfter
	}
	if ttl <= 0 {
		return Run{}, fmt.Errorf("runledger: the server's policy has no stale_after")
	}
	interval, margin := pace(policy, ttl, c.opts.HeartbeatInterval)

	sent := time.Now()
	started, err := c.StartRun(ctx, business, StartRequest{RunID: spec.RunID, TotalCalls: spec.TotalCalls,
		WorkerID: spec.WorkerID, StaleAfter: Duration(spec.StaleAfter), StallAfter: Duration(spec.StallAfter)})
	if err != nil {
		return Run{}, fmt.Errorf("start run %s: %w", spec.RunID, err)
	}
	c.logger.Info("runledger: run started", "run_id", spec.RunID, "business", business,
		"heartbeat_interval", interval, "liveness_margin", margin)

	workCtx, cancelWork := context.WithCancelCause(ctx)
	defer cancelWork(nil)
	p := newProgress(spec.RunID, spec.TotalCalls)
	h := &heartbeater{c: c, business: business, runID: spec.RunID, progress: p,
		interval: interval, margin: margin, cancelWork: cancelWork}
	h.acknowledged(sent, started)
	if h.staleBy.IsZero() {
		h.staleBy = sent.Add(ttl)
	}

	// Heartbeats go on while work winds down after the caller's ctx ends,
	// so the run is not judged silent before it is completed.
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); h.loop(hbCtx) }()
	stopHeartbeats := func() { stopHB(); <-hbDone }
	defer stopHeartbeats() // also when work calls runtime.Goexit

	res := callWork(workCtx, p, work)
	cause := context.Cause(workCtx)
	stopHeartbeats()
	if res.panicked {
		defer panic(res.panicValue) // after the run is completed (or fenced)
	}

	switch h.fence {
	case ErrRunEnded:
		return h.last, fmt.Errorf("run %s ended by someone else (%s, %s): %w", spec.RunID, h.last.Status, h.last.EndReason, ErrRunEnded)
	case ErrLivenessLost:
		return h.last, fmt.Errorf("run %s: no heartbeat acknowledged for its TTL minus %s: %w", spec.RunID, margin, ErrLivenessLost)
	}

	done := completion(res, cause)
	completed, failed := p.Counts()
	done.CompletedCalls, done.FailedCalls = completed, failed
	// The complete must be sent even if the caller's ctx has ended.
	final, err := c.CompleteRun(context.WithoutCancel(ctx), business, spec.RunID, done)
	if err != nil {
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.Run == nil || !endedAs(*apiErr.Run, done.Outcome) {
			return h.last, fmt.Errorf("complete run %s as %s: %w", spec.RunID, done.Outcome, err)
		}
		// Ended as asked: a complete of ours whose answer (and stored key)
		// was lost, e.g. a server crash between append and answer.
		final = *apiErr.Run
	}
	c.logger.Info("runledger: run ended", "run_id", spec.RunID, "status", final.Status, "end_reason", final.EndReason)
	switch done.Outcome {
	case OutcomeCancelled:
		return final, fmt.Errorf("run %s cancelled as requested: %w", spec.RunID, ErrCancelRequested)
	case OutcomeFailed:
		if res.err != nil {
			return final, fmt.Errorf("run %s failed: %w", spec.RunID, res.err)
		}
		return final, fmt.Errorf("run %s failed: %s", spec.RunID, done.Error)
	}
	return final, nil
}

// workResult is how work ended.
type workResult struct {
	err        error
	panicked   bool
	panicValue any
}

// callWork calls work, turning a panic into a result.
func callWork(ctx context.Context, p *Progress, work WorkFunc) (res workResult) {
	returned := false
	defer func() {
		if !returned {
			res.panicValue = recover()
			res.panicked = true
		}
	}()
	res.err = work(ctx, p)
	returned = true
	return res
}

// completion is the outcome to report for how work ended.
func completion(res workResult, cause error) Completion {
	switch {
	case res.panicked:
		return Completion{Outcome: OutcomeFailed, Error: fmt.Sprintf("panic: %v", res.panicValue)}
	case errors.Is(cause, ErrCancelRequested):
		return Completion{Outcome: OutcomeCancelled}
	case res.err != nil:
		return Completion{Outcome: OutcomeFailed, Error: res.err.Error()}
	}
	return Completion{Outcome: OutcomeCompleted}
}

// endedAs reports whether run ended the way a worker's complete with
// outcome would have ended it.
func endedAs(run Run, outcome string) bool {
	switch outcome {
	case OutcomeCompleted:
		return run.Status == StatusCompleted
	case OutcomeFailed:
		return run.Status == StatusFailed && run.EndReason == "worker_failed"
	case OutcomeCancelled:
		return run.Status == StatusCancelled && run.EndReason == "cancelled"
	}
	return false
}
