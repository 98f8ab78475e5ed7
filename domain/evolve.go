package domain

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
		r.StartedAt = e.OccurredAt
		r.LastHeartbeatAt = e.OccurredAt
	case Heartbeat:
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
	case RunCompleted:
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
