package domain

import (
	"time"

	"github.com/google/uuid"
)

// Command is a request to change a run: one of the command types of this
// package (the unexported method closes the set; Decide switches on them).
type Command interface{ isCommand() }

// StartRun opens a new run. The one-active-run-per-business rule spans
// streams, so the event store enforces it when RunStarted is appended.
type StartRun struct {
	RunID      uuid.UUID
	BusinessID string
	WorkerID   string
	TotalCalls int
	// StaleAfter and StallAfter set this run's own TTL and stall threshold
	// (each RunPolicyMin–RunPolicyMax); zero means the service's value. The
	// values in force are recorded in RunStarted either way.
	StaleAfter time.Duration
	StallAfter time.Duration
}

// RecordHeartbeat is a worker's sign of life with its cumulative progress.
// (The event it produces is Heartbeat.)
type RecordHeartbeat struct {
	CompletedCalls int
	FailedCalls    int
}

// RequestCancel asks the run to stop: gracefully when it is live, at once
// when it is already silent past its TTL.
type RequestCancel struct {
	Reason      string
	RequestedBy string
}

// PauseRun asks the run's worker to stop dialing and keep heartbeating.
type PauseRun struct {
	Reason      string
	RequestedBy string
}

// ResumeRun lets a paused run's worker dial again.
type ResumeRun struct {
	Reason      string
	RequestedBy string
}

// CompleteRun is the worker's report that the run has ended.
type CompleteRun struct {
	Outcome        Outcome
	Error          string
	CompletedCalls int
	FailedCalls    int
}

// FailStale ends a run that has been silent past its TTL.
type FailStale struct {
	DetectedBy string
}

func (StartRun) isCommand()        {}
func (RecordHeartbeat) isCommand() {}
func (RequestCancel) isCommand()   {}
func (PauseRun) isCommand()        {}
func (ResumeRun) isCommand()       {}
func (CompleteRun) isCommand()     {}
func (FailStale) isCommand()       {}
