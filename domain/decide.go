package domain

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Decide returns the events that cmd produces on state r at the server time
// now, or the reason it is refused: ErrRunNotFound, *RunEndedError (with the
// final state), *ValidationError, ErrRunExists or ErrNotStale. An empty slice
// with a nil error means the command is acknowledged and changes nothing.
// Every rule judges r by its own recorded policy, falling back to p.
func (p Policy) Decide(r Run, cmd Command, now time.Time) ([]Event, error) {
	now = now.UTC()
	if start, ok := cmd.(StartRun); ok {
		return p.decideStart(r, start, now)
	}
	if !r.Exists() {
		return nil, ErrRunNotFound
	}
	if r.Ended() {
		return nil, &RunEndedError{Final: r}
	}
	switch c := cmd.(type) {
	case RecordHeartbeat:
		return p.decideHeartbeat(r, c, now)
	case RequestCancel:
		return p.decideCancel(r, c, now)
	case PauseRun:
		return decidePause(r, c, now)
	case ResumeRun:
		return decideResume(r, c, now)
	case CompleteRun:
		return decideComplete(r, c, now)
	case FailStale:
		return p.decideFailStale(r, c, now)
	}
	return nil, fmt.Errorf("unknown command %T", cmd)
}

func (p Policy) decideStart(r Run, c StartRun, now time.Time) ([]Event, error) {
	var v validation
	if c.RunID == uuid.Nil {
		v.add("run_id", "must be a non-nil UUID")
	}
	if err := ValidateBusinessID(c.BusinessID); err != nil {
		v.add("business_id", "must be 1-64 characters of letters, digits, '_', '.', '-'")
	}
	checkText(&v, "worker_id", c.WorkerID, MaxIDLen, true)
	if c.TotalCalls < 0 || c.TotalCalls > MaxCalls {
		v.add("total_calls", "must be between 0 and %d", MaxCalls)
	}
	checkRunPolicy(&v, "stale_after", c.StaleAfter)
	checkRunPolicy(&v, "stall_after", c.StallAfter)
	if err := v.err(); err != nil {
		return nil, err
	}
	staleAfter, stallAfter := p.runPolicy(c)
	if p.HeartbeatMinInterval > staleAfter/10 {
		return nil, Invalid("stale_after", fmt.Sprintf(
			"%s is less than ten times the heartbeat minimum interval (%s): coalescing could make a live run look silent",
			staleAfter, p.HeartbeatMinInterval))
	}
	if r.Exists() {
		if r.BusinessID == c.BusinessID && r.WorkerID == c.WorkerID && r.TotalCalls == c.TotalCalls &&
			(c.StaleAfter == 0 || c.StaleAfter == p.StaleAfterFor(r)) &&
			(c.StallAfter == 0 || c.StallAfter == p.StallAfterFor(r)) {
			return nil, nil // a retried start: acknowledged, nothing new
		}
		return nil, ErrRunExists
	}
	return []Event{RunStarted{RunID: c.RunID, BusinessID: c.BusinessID, WorkerID: c.WorkerID,
		TotalCalls: c.TotalCalls, StaleAfter: Duration(staleAfter), StallAfter: Duration(stallAfter),
		OccurredAt: now}}, nil
}

// decideHeartbeat stores a heartbeat at most once per minimum interval,
// except one that carries news: the first after a cancel request (it
// delivers the request) or one with progress while the run is stalled (it
// clears the flag at once).
func (p Policy) decideHeartbeat(r Run, c RecordHeartbeat, now time.Time) ([]Event, error) {
	if err := checkProgress(r, c.CompletedCalls, c.FailedCalls); err != nil {
		return nil, err
	}
	deliver := r.CancelRequested && !r.CancelDelivered
	unstall := c.CompletedCalls+c.FailedCalls > r.CompletedCalls+r.FailedCalls && p.Stalled(r, now)
	if !deliver && !unstall && r.SilentFor(now) < p.HeartbeatMinInterval {
		return nil, nil // coalesced: acknowledged, not stored
	}
	return []Event{Heartbeat{CompletedCalls: c.CompletedCalls, FailedCalls: c.FailedCalls,
		CancelDelivered: deliver, OccurredAt: now}}, nil
}

// decideCancel is graceful while the run shows life within its TTL (paused or
// not), and forced once it is silent past it.
func (p Policy) decideCancel(r Run, c RequestCancel, now time.Time) ([]Event, error) {
	var v validation
	checkText(&v, "reason", c.Reason, maxReasonLn, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	if r.Silent(now, p.StaleAfter) {
		return []Event{
			CancelRequested{Reason: c.Reason, RequestedBy: c.RequestedBy, Forced: true,
				SilentFor: Duration(r.SilentFor(now)), OccurredAt: now},
			RunCompleted{Outcome: OutcomeCancelled, CompletedCalls: r.CompletedCalls,
				FailedCalls: r.FailedCalls, OccurredAt: now},
		}, nil
	}
	if r.CancelRequested {
		return nil, nil // repeating a cancel is harmless
	}
	return []Event{CancelRequested{Reason: c.Reason, RequestedBy: c.RequestedBy, OccurredAt: now}}, nil
}

// decidePause acknowledges without storing a pause of a paused run or of one
// whose cancel was requested (it is stopping anyway).
func decidePause(r Run, c PauseRun, now time.Time) ([]Event, error) {
	var v validation
	checkText(&v, "reason", c.Reason, maxReasonLn, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	if r.Paused || r.CancelRequested {
		return nil, nil
	}
	return []Event{PauseRequested{Reason: c.Reason, RequestedBy: c.RequestedBy, OccurredAt: now}}, nil
}

// decideResume acknowledges without storing a resume of a run not paused.
func decideResume(r Run, c ResumeRun, now time.Time) ([]Event, error) {
	var v validation
	checkText(&v, "reason", c.Reason, maxReasonLn, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	if !r.Paused {
		return nil, nil
	}
	return []Event{RunResumed{Reason: c.Reason, RequestedBy: c.RequestedBy, OccurredAt: now}}, nil
}

func decideComplete(r Run, c CompleteRun, now time.Time) ([]Event, error) {
	var v validation
	switch c.Outcome {
	case OutcomeCompleted, OutcomeFailed, OutcomeCancelled:
	default:
		v.add("outcome", "must be one of completed, failed, cancelled")
	}
	checkText(&v, "error", c.Error, MaxTextLen, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := checkProgress(r, c.CompletedCalls, c.FailedCalls); err != nil {
		return nil, err
	}
	return []Event{RunCompleted{Outcome: c.Outcome, Error: c.Error, CompletedCalls: c.CompletedCalls,
		FailedCalls: c.FailedCalls, OccurredAt: now}}, nil
}

// decideFailStale ends a run silent past its own TTL and records that TTL.
func (p Policy) decideFailStale(r Run, c FailStale, now time.Time) ([]Event, error) {
	if !r.Silent(now, p.StaleAfter) {
		return nil, ErrNotStale
	}
	return []Event{RunStaleFailed{LastHeartbeatAt: r.LastHeartbeatAt, StaleAfter: Duration(p.StaleAfterFor(r)),
		DetectedAt: now, AbandonedCalls: r.PendingCalls(), CancelRequested: r.CancelRequested,
		DetectedBy: c.DetectedBy}}, nil
}
