package domain

import (
	"time"

	"github.com/google/uuid"
)

// Event is a fact in a run's history. Its stored form is its Type, a schema
// version and its JSON payload; Go type names never reach the log.
type Event interface {
	// EventType is the stable name stored in the log.
	EventType() string
	// When is the server time at which the event was decided.
	When() time.Time
}

// The stored event type names (the first five are the client's names; never
// rename any of them).
const (
	TypeRunStarted      = "RunStarted"
	TypeHeartbeat       = "Heartbeat"
	TypeCancelRequested = "CancelRequested"
	TypeRunCompleted    = "RunCompleted"
	TypeRunStaleFailed  = "RunStaleFailed"
	TypePauseRequested  = "PauseRequested"
	TypeRunResumed      = "RunResumed"
)

// RunStarted opens a run's stream. Since schema version 2 it records the
// run's policy in force (StaleAfter, StallAfter); a version 1 payload has
// neither, they decode as zero, and zero means "the service's configured
// values" wherever the run is judged.
type RunStarted struct {
	RunID      uuid.UUID `json:"run_id"`
	BusinessID string    `json:"business_id"`
	WorkerID   string    `json:"worker_id"`
	TotalCalls int       `json:"total_calls"`
	StaleAfter Duration  `json:"stale_after"`
	StallAfter Duration  `json:"stall_after"`
	OccurredAt time.Time `json:"occurred_at"`
}

// Heartbeat is a worker's sign of life with its progress. CancelDelivered
// marks the first heartbeat answered with the cancel request.
type Heartbeat struct {
	CompletedCalls  int       `json:"completed_calls"`
	FailedCalls     int       `json:"failed_calls"`
	CancelDelivered bool      `json:"cancel_delivered,omitempty"`
	OccurredAt      time.Time `json:"occurred_at"`
}

// CancelRequested records a user's request to stop the run. Forced is true
// when the run was already silent past the TTL, in which case a
// RunCompleted{Outcome: cancelled} follows in the same append.
type CancelRequested struct {
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Forced      bool      `json:"forced"`
	SilentFor   Duration  `json:"silent_for,omitempty"`
	OccurredAt  time.Time `json:"occurred_at"`
}

// PauseRequested records a user's request that the worker stop dialing and
// keep heartbeating. It is not a sign of life.
type PauseRequested struct {
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	OccurredAt  time.Time `json:"occurred_at"`
}

// RunResumed ends a pause. It restarts the stall clock (a pause is not a
// stall) and is not a sign of life.
type RunResumed struct {
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	OccurredAt  time.Time `json:"occurred_at"`
}

// Outcome is how a worker (or a forced cancel) says a run ended.
type Outcome string

// The outcomes of RunCompleted.
const (
	OutcomeCompleted Outcome = "completed"
	OutcomeFailed    Outcome = "failed"
	OutcomeCancelled Outcome = "cancelled"
)

// RunCompleted ends a run with the outcome its worker reported, or with
// "cancelled" after a forced cancel.
type RunCompleted struct {
	Outcome        Outcome   `json:"outcome"`
	Error          string    `json:"error,omitempty"`
	CompletedCalls int       `json:"completed_calls"`
	FailedCalls    int       `json:"failed_calls"`
	OccurredAt     time.Time `json:"occurred_at"`
}

// RunStaleFailed ends a run whose worker went silent past its TTL, which
// StaleAfter records. If a cancel had been requested the run ends as
// cancelled, otherwise as failed.
type RunStaleFailed struct {
	// LastHeartbeatAt is the run's last sign of life (start or stored
	// heartbeat). Its stored name, last_activity_at, predates the rename and
	// stays: payloads in the log never change.
	LastHeartbeatAt time.Time `json:"last_activity_at"`
	StaleAfter      Duration  `json:"stale_after"`
	DetectedAt      time.Time `json:"detected_at"`
	AbandonedCalls  int       `json:"abandoned_calls"`
	CancelRequested bool      `json:"cancel_requested,omitempty"`
	DetectedBy      string    `json:"detected_by,omitempty"`
}

// EventType implements Event.
func (RunStarted) EventType() string { return TypeRunStarted }

// EventType implements Event.
func (Heartbeat) EventType() string { return TypeHeartbeat }

// EventType implements Event.
func (CancelRequested) EventType() string { return TypeCancelRequested }

// EventType implements Event.
func (PauseRequested) EventType() string { return TypePauseRequested }

// EventType implements Event.
func (RunResumed) EventType() string { return TypeRunResumed }

// EventType implements Event.
func (RunCompleted) EventType() string { return TypeRunCompleted }

// EventType implements Event.
func (RunStaleFailed) EventType() string { return TypeRunStaleFailed }

// When implements Event.
func (e RunStarted) When() time.Time { return e.OccurredAt }

// When implements Event.
func (e Heartbeat) When() time.Time { return e.OccurredAt }

// When implements Event.
func (e CancelRequested) When() time.Time { return e.OccurredAt }

// When implements Event.
func (e PauseRequested) When() time.Time { return e.OccurredAt }

// When implements Event.
func (e RunResumed) When() time.Time { return e.OccurredAt }

// When implements Event.
func (e RunCompleted) When() time.Time { return e.OccurredAt }

// When implements Event.
func (e RunStaleFailed) When() time.Time { return e.DetectedAt }

// Terminal reports whether e ends a run.
func Terminal(e Event) bool {
	switch e.(type) {
	case RunCompleted, RunStaleFailed:
		return true
	}
	return false
}
