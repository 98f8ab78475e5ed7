package domain

import "time"

// Evolve returns the state after e. It never fails: events in the log are
// facts, and Decide is the only place that refuses anything.
func Evolve(r Run, e Event) Run {
	r.Version++
	switch e := e.(type) {
	case RunStarted:
		r.ID = e.RunID
		r.BusinessID = e.BusinessID
		r.WorkerID = e.WorkerID
		r.TotalCalls = e.TotalCalls
		r.Status = StatusRunning
		r.StaleAfter = e.StaleAfter
		r.StallAfter = e.StallAfter
		r.StartedAt = e.OccurredAt
		r.LastHeartbeatAt = e.OccurredAt
		r.LastProgressAt = e.OccurredAt
	case Heartbeat:
		r = progressed(r, e.CompletedCalls, e.FailedCalls, e.OccurredAt)
		r.CompletedCalls = e.CompletedCalls
		r.FailedCalls = e.FailedCalls
		if e.OccurredAt.After(r.LastHeartbeatAt) { // a skewed replica never moves life backwards
			r.LastHeartbeatAt = e.OccurredAt
		}
		if e.CancelDelivered {
			r.CancelDelivered = true
		}
	case CancelRequested:
		r.CancelRequested = true
		r.CancelReason = e.Reason
		r.CancelRequestedBy = e.RequestedBy
		r.CancelForced = e.Forced
	case PauseRequested: // not a sign of life: LastHeartbeatAt stays
		r.Paused = true
		r.PausedAt = e.OccurredAt
		r.PauseReason = e.Reason
		r.PausedBy = e.RequestedBy
	case RunResumed: // not a sign of life, but the stall clock restarts
		r.Paused = false
		r.PausedAt = time.Time{}
		r.PauseReason = ""
		r.PausedBy = ""
		r.LastProgressAt = later(r.LastProgressAt, e.OccurredAt)
	case RunCompleted:
		r = progressed(r, e.CompletedCalls, e.FailedCalls, e.OccurredAt)
		r.CompletedCalls = e.CompletedCalls
		r.FailedCalls = e.FailedCalls
		r.EndedAt = e.OccurredAt
		r.LastError = e.Error
		switch e.Outcome {
		case OutcomeCompleted:
			r.Status, r.EndReason = StatusCompleted, EndCompleted
		case OutcomeFailed:
			r.Status, r.EndReason = StatusFailed, EndWorkerFailed
		default:
			r.Status, r.EndReason = StatusCancelled, EndCancelled
			if r.CancelForced {
				r.EndReason = EndCancelForced
			}
		}
	case RunStaleFailed:
		r.EndedAt = e.DetectedAt
		r.AbandonedCalls = e.AbandonedCalls
		if e.CancelRequested {
			r.Status, r.EndReason = StatusCancelled, EndCancelled
		} else {
			r.Status, r.EndReason = StatusFailed, EndStale
		}
	}
	return r
}

// progressed moves LastProgressAt to at if completed+failed grew.
func progressed(r Run, completed, failed int, at time.Time) Run {
	if completed+failed > r.CompletedCalls+r.FailedCalls {
		r.LastProgressAt = later(r.LastProgressAt, at)
	}
	return r
}

// later returns the later of a and b: a skewed replica never moves a clock of
// the run backwards.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
