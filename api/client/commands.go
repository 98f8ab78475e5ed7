package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/google/uuid"
)

// newKey returns a fresh Idempotency-Key for one logical command.
func newKey() string { return uuid.NewString() }

func businessPath(business string) string { return "/v1/businesses/" + url.PathEscape(business) }

func runPath(business, runID string) string {
	return businessPath(business) + "/runs/" + url.PathEscape(runID)
}

// StartRequest is the body of a start.
type StartRequest struct {
	// RunID is the run's id, chosen by the client so a retried start is
	// recognised (required here; Run chooses one for you).
	RunID      string
	TotalCalls int
	WorkerID   string
	// StaleAfter and StallAfter are the run's own policy (1m-24h); sent only when set.
	StaleAfter, StallAfter Duration
}

type startJSON struct {
	RunID      string    `json:"run_id"`
	TotalCalls int       `json:"total_calls"`
	WorkerID   string    `json:"worker_id"`
	StaleAfter *Duration `json:"stale_after,omitempty"`
	StallAfter *Duration `json:"stall_after,omitempty"`
}

// StartRun starts a run (worker token) under one Idempotency-Key for all its
// attempts. A retried start of the same run is success (the server answers
// 201 the first time, 200 after). If ctx ends while an attempt is in
// flight, that attempt is waited for (so a run is not started behind the
// caller's back), but no new one is made. It returns *Error with Code
// active_run_exists (and RunID) if another run of the business is active.
func (c *Client) StartRun(ctx context.Context, business string, s StartRequest) (Run, error) {
	body := startJSON{RunID: s.RunID, TotalCalls: s.TotalCalls, WorkerID: s.WorkerID}
	if s.StaleAfter > 0 {
		body.StaleAfter = &s.StaleAfter
	}
	if s.StallAfter > 0 {
		body.StallAfter = &s.StallAfter
	}
	var run Run
	_, err := c.do(ctx, request{method: http.MethodPost, path: businessPath(business) + "/runs", body: body, key: newKey(), finish: true}, &run)
	return run, err
}

type progressJSON struct {
	CompletedCalls int `json:"completed_calls"`
	FailedCalls    int `json:"failed_calls"`
}

// Heartbeat sends one heartbeat with the cumulative counts, once (no retry:
// the next heartbeat is the retry) and without an Idempotency-Key: a
// heartbeat is idempotent by content, and a repeat should see the run as it
// is now. It returns *Error (errors.Is ErrRunEnded) if the run has ended.
func (c *Client) Heartbeat(ctx context.Context, business, runID string, completed, failed int) (HeartbeatAnswer, error) {
	var h heartbeatJSON
	_, err := c.do(ctx, request{method: http.MethodPost, path: runPath(business, runID) + "/heartbeat",
		body: progressJSON{completed, failed}, once: true}, &h)
	return h.answer(), err
}

// Outcomes a worker reports.
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
)

// Completion is the body of a complete.
type Completion struct {
	Outcome                     string
	Error                       string
	CompletedCalls, FailedCalls int
}

type completeJSON struct {
	Outcome        string  `json:"outcome"`
	Error          *string `json:"error,omitempty"`
	CompletedCalls int     `json:"completed_calls"`
	FailedCalls    int     `json:"failed_calls"`
}

// CompleteRun ends a run (worker token) under one Idempotency-Key for all
// its attempts, so a retry whose first answer was lost gets that answer.
// It returns *Error (errors.Is ErrRunEnded) if the run had already ended.
func (c *Client) CompleteRun(ctx context.Context, business, runID string, done Completion) (Run, error) {
	body := completeJSON{Outcome: done.Outcome, CompletedCalls: done.CompletedCalls, FailedCalls: done.FailedCalls}
	if done.Error != "" {
		body.Error = &done.Error
	}
	var run Run
	_, err := c.do(ctx, request{method: http.MethodPost, path: runPath(business, runID) + "/complete", body: body, key: newKey()}, &run)
	return run, err
}

type reasonJSON struct {
	Reason string `json:"reason,omitempty"`
}

// CancelRun asks a run to stop (user token): the answer's run has
// CancelRequested (graceful: its worker is told on its next heartbeat) or
// status cancelled (forced: it was silent past its TTL). It returns *Error
// (errors.Is ErrRunEnded) if the run had already ended.
func (c *Client) CancelRun(ctx context.Context, business, runID, reason string) (Run, error) {
	return c.userCommand(ctx, runPath(business, runID)+"/cancel", reason)
}

// PauseRun asks a run's worker to pause (user token); repeating is harmless.
// It returns *Error with Status 404 or 405 from a server without pause.
func (c *Client) PauseRun(ctx context.Context, business, runID, reason string) (Run, error) {
	return c.userCommand(ctx, runPath(business, runID)+"/pause", reason)
}

// ResumeRun lifts a pause (user token); repeating is harmless.
func (c *Client) ResumeRun(ctx context.Context, business, runID, reason string) (Run, error) {
	return c.userCommand(ctx, runPath(business, runID)+"/resume", reason)
}

func (c *Client) userCommand(ctx context.Context, path, reason string) (Run, error) {
	var run Run
	_, err := c.do(ctx, request{method: http.MethodPost, path: path, body: reasonJSON{reason}, key: newKey()}, &run)
	return run, err
}

// Policy returns the service's policy (GET /v1/policy, any role).
func (c *Client) Policy(ctx context.Context) (Policy, error) {
	var p Policy
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/policy"}, &p)
	return p, err
}
