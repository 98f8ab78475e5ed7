package domain

import (
	"time"

	"github.com/google/uuid"
)

// Status is where a run is in its life: running, then exactly one terminal status.
type Status string

// The statuses of a run.
const (
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// EndReason says why a run ended.
type EndReason string

// The reasons a run ends.
const (
	EndCompleted    EndReason = "completed"     // the worker finished the list
	EndWorkerFailed EndReason = "worker_failed" // the worker reported a failure
	EndCancelled    EndReason = "cancelled"     // a user asked, and the worker stopped (or went silent after the request)
	EndCancelForced EndReason = "cancel_forced" // a user cancelled a run that was already silent past the TTL
	EndStale        EndReason = "stale"         // the worker went silent past the TTL
)

// Run is the state of one run, folded from its events by Evolve. The zero
// Run (Version 0) is a run that does not exist yet.
type Run struct {
	ID                uuid.UUID `json:"run_id"`
	BusinessID        string    `json:"business_id"`
	WorkerID          string    `json:"worker_id"`
	Status            Status    `json:"status"`
	CancelRequested   bool      `json:"cancel_requested"`
	CancelReason      string    `json:"cancel_reason,omitempty"`
	CancelRequestedBy string    `json:"cancel_requested_by,omitempty"`
	CancelDelivered   bool      `json:"cancel_delivered,omitempty"`
	CancelForced      bool      `json:"cancel_forced,omitempty"`
	TotalCalls        int       `json:"total_calls"`
	CompletedCalls    int       `json:"completed_calls"`
	FailedCalls       int       `json:"failed_calls"`
	StartedAt         time.Time `json:"started_at"`
	// LastHeartbeatAt is the server time of the last sign of life: the start
	// or the last stored heartbeat. Liveness is judged from it alone.
	LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
	EndedAt         time.Time `json:"ended_at,omitzero"`
	EndReason       EndReason `json:"end_reason,omitempty"`
	LastError       string    `json:"last_error,omitempty"`
	// AbandonedCalls is the number of calls still pending when the run was
	// ended by the stale rule.
	AbandonedCalls int `json:"abandoned_calls,omitempty"`
	// StaleAfter and StallAfter are the run's own TTL and stall threshold,
	// recorded by RunStarted. Zero (a run started before runs recorded their
	// policy) means the service's configured value: use TTL and StallThreshold.
	StaleAfter Duration `json:"stale_after,omitzero"`
	StallAfter Duration `json:"stall_after,omitzero"`
	// Paused is true between a PauseRequested and the next RunResumed; the
	// Pause fields describe the pause in force and are cleared on resume. An
	// ended run keeps the values it had when it ended.
	Paused      bool      `json:"paused,omitempty"`
	PausedAt    time.Time `json:"paused_at,omitzero"`
	PauseReason string    `json:"pause_reason,omitempty"`
	PausedBy    string    `json:"paused_by,omitempty"`
	// LastProgressAt is the server time of the last progress: the start, a
	// stored heartbeat or completion whose completed+failed grew, or a resume
	// (a pause is not a stall). Stall detection is judged from it. It is zero
	// in a state decoded from a snapshot written before it existed, and then
	// StartedAt stands in for it.
	LastProgressAt time.Time `json:"last_progress_at,omitzero"`
	Version        int64     `json:"version"`
}

// Exists reports whether the run has been started.
func (r Run) Exists() bool { return r.Version > 0 }

// Ended reports whether the run has reached a terminal status.
func (r Run) Ended() bool { return r.Exists() && r.Status != StatusRunning }

// PendingCalls is the number of calls neither completed nor failed.
func (r Run) PendingCalls() int { return r.TotalCalls - r.CompletedCalls - r.FailedCalls }

// TTL is the run's own stale_after, or def for a run that recorded none.
func (r Run) TTL(def time.Duration) time.Duration {
	if r.StaleAfter > 0 {
		return time.Duration(r.StaleAfter)
	}
	return def
}

// StallThreshold is the run's own stall_after, or def for a run that recorded
// none (DefaultStallAfter if def is zero too).
func (r Run) StallThreshold(def time.Duration) time.Duration {
	switch {
	case r.StallAfter > 0:
		return time.Duration(r.StallAfter)
	case def > 0:
		return def
	}
	return DefaultStallAfter
}

// StaleAt is the instant from which the run counts as silent: its last sign
// of life plus its TTL (defaultTTL if it recorded none).
func (r Run) StaleAt(defaultTTL time.Duration) time.Time {
	return r.LastHeartbeatAt.Add(r.TTL(defaultTTL))
}

// SilentFor is how long the run has shown no sign of life at now.
func (r Run) SilentFor(now time.Time) time.Duration { return now.Sub(r.LastHeartbeatAt) }

// Silent reports whether a running run's last sign of life is at least its
// TTL (defaultTTL if it recorded none) old at now.
func (r Run) Silent(now time.Time, defaultTTL time.Duration) bool {
	return r.Exists() && !r.Ended() && !now.Before(r.StaleAt(defaultTTL))
}

// Active reports whether the run is active at now: started, not ended, and
// its last sign of life younger than its TTL (defaultTTL if it recorded none)
// by the server's clock. This is the iron rule; nothing else may call a run
// active. A paused run is judged the same way.
func (r Run) Active(now time.Time, defaultTTL time.Duration) bool {
	return r.Exists() && !r.Ended() && now.Before(r.StaleAt(defaultTTL))
}

// ProgressAt is the instant stall detection counts from: LastProgressAt, or
// StartedAt for a state that predates LastProgressAt.
func (r Run) ProgressAt() time.Time {
	if r.LastProgressAt.IsZero() {
		return r.StartedAt
	}
	return r.LastProgressAt
}

// StalledSince is the instant from which the run counts as stalled if it
// stays active, unpaused and without progress: ProgressAt plus its stall
// threshold (defaultStallAfter if it recorded none). Policy.Stalled says
// whether it is stalled at a given instant.
func (r Run) StalledSince(defaultStallAfter time.Duration) time.Time {
	return r.ProgressAt().Add(r.StallThreshold(defaultStallAfter))
}
