package client

import (
	"context"
	"errors"
	"time"
)

// minHeartbeatInterval keeps a misconfigured policy from turning the
// heartbeat loop into a busy loop.
const minHeartbeatInterval = 10 * time.Millisecond

// pace derives the heartbeat interval and the liveness margin from the
// server's policy and the run's TTL:
//
//	interval = heartbeat_min_interval (or Options.HeartbeatInterval; ttl/30 if zero),
//	           at most ttl/10, at least 10ms
//	margin   = max(2 × interval, ttl/10)
//
// Heartbeating at the server's minimum interval means every heartbeat can be
// stored (progress on the page and cancel delivery lag by at most one
// interval), and the server guarantees that interval is at most a tenth of
// its TTL, so about eight heartbeats in a row must go unanswered before the
// margin is reached and the work is fenced.
func pace(p Policy, ttl, override time.Duration) (interval, margin time.Duration) {
	interval = time.Duration(p.HeartbeatMinInterval)
	if override > 0 {
		interval = override
	}
	if interval <= 0 {
		interval = ttl / 30
	}
	interval = max(min(interval, ttl/10), minHeartbeatInterval)
	return interval, max(2*interval, ttl/10)
}

// heartbeater is Run's heartbeat goroutine. Its fields other than the
// options are written by loop only and read by Run after loop has returned.
type heartbeater struct {
	c                *Client
	business, runID  string
	progress         *Progress
	interval, margin time.Duration
	cancelWork       context.CancelCauseFunc

	// staleBy is the local time by which the server will judge the run silent
	// past its TTL, judged conservatively: the send time of the last
	// acknowledged heartbeat (or start) plus what its answer said was left
	// (stale_at - server_time, both the server's clock). Coalesced heartbeats
	// do not move stale_at, and this follows.
	staleBy time.Time
	// last is the run as the last answer showed it.
	last Run
	// fence is ErrRunEnded or ErrLivenessLost once the loop fenced the work.
	fence error
	// cancelled is true once a heartbeat delivered a cancel request.
	cancelled bool
}

// acknowledged records an answer that proves the run alive, received for a
// request sent at sent.
func (h *heartbeater) acknowledged(sent time.Time, run Run) {
	h.last = run
	if run.StaleAt != nil && !run.ServerTime.IsZero() {
		h.staleBy = sent.Add(run.StaleAt.Sub(run.ServerTime))
	}
}

// loop heartbeats every interval until ctx ends (Run ends it when work has
// returned) or it fences the work: a 409 run_ended cancels work with
// ErrRunEnded, and reaching staleBy - margin without an acknowledged
// heartbeat cancels it with ErrLivenessLost. A cancel request in an answer
// cancels work with ErrCancelRequested, and the loop goes on heartbeating
// while work winds down. A heartbeat in flight never delays the fence: each
// is bounded by the liveness deadline.
func (h *heartbeater) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	wait := h.interval
	for {
		deadline := h.staleBy.Add(-h.margin)
		timer.Reset(min(wait, time.Until(deadline)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait = h.interval
		if !time.Now().Before(deadline) {
			h.fenceWith(ErrLivenessLost)
			h.c.logger.Error("runledger: no heartbeat acknowledged in time; stopping the work before the run is reaped",
				"run_id", h.runID, "business", h.business, "stale_by", h.staleBy)
			return
		}
		completed, failed, refused := h.progress.snapshot()
		if refused {
			h.c.logger.Warn("runledger: ignored progress that went backwards or past the total", "run_id", h.runID)
		}
		sent := time.Now()
		actx, cancel := context.WithDeadline(ctx, earliest(sent.Add(h.c.opts.RequestTimeout), deadline))
		ans, err := h.c.Heartbeat(actx, h.business, h.runID, completed, failed)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var apiErr *Error
		switch {
		case err == nil:
			h.acknowledged(sent, ans.Run)
			if h.progress.setPaused(ans.PauseRequested) {
				h.c.logger.Info("runledger: run paused or resumed", "run_id", h.runID, "paused", ans.PauseRequested)
			}
			if ans.CancelRequested && !h.cancelled {
				h.cancelled = true
				h.c.logger.Info("runledger: cancel requested; stopping the work", "run_id", h.runID)
				h.cancelWork(ErrCancelRequested)
			}
		case errors.As(err, &apiErr) && apiErr.Code == CodeRunEnded:
			if apiErr.Run != nil {
				h.last = *apiErr.Run
			}
			h.fenceWith(ErrRunEnded)
			h.c.logger.Warn("runledger: run ended by someone else; stopping the work", "run_id", h.runID,
				"status", h.last.Status, "end_reason", h.last.EndReason)
			return
		default:
			h.c.logger.Warn("runledger: heartbeat failed", "run_id", h.runID, "err", err, "stale_by", h.staleBy)
			if errors.As(err, &apiErr) && apiErr.RetryAfter > wait {
				wait = min(apiErr.RetryAfter, maxRetryAfter)
			}
		}
	}
}

func (h *heartbeater) fenceWith(cause error) {
	h.fence = cause
	h.cancelWork(cause)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
