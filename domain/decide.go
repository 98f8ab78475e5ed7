package domain

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Policy holds the rules' tunables. The zero value is not valid; use DefaultPolicy.
type Policy struct {
	// StaleAfter is the TTL: a run whose last sign of life is this old is not active.
	StaleAfter time.Duration
	// HeartbeatMinInterval is the least time between two stored heartbeats;
	// heartbeats closer together are acknowledged but not stored.
	HeartbeatMinInterval time.Duration
}

// DefaultPolicy is the policy of the contract's defaults: 15m TTL, 5s coalescing.
func DefaultPolicy() Policy {
	return Policy{StaleAfter: 15 * time.Minute, HeartbeatMinInterval: 5 * time.Second}
}

// Validate returns a ValidationError if the policy could make a live run look
// silent: the minimum heartbeat interval may be at most a tenth of the TTL.
func (p Policy) Validate() error {
	var v validation
	if p.StaleAfter <= 0 {
		v.add("stale_after", "must be positive")
	}
	if p.HeartbeatMinInterval < 0 {
		v.add("heartbeat_min_interval", "must not be negative")
	}
	if p.StaleAfter > 0 && p.HeartbeatMinInterval > p.StaleAfter/10 {
		v.add("heartbeat_min_interval", "%s exceeds a tenth of stale_after (%s): coalescing could make a live run look silent",
			p.HeartbeatMinInterval, p.StaleAfter/10)
	}
	return v.err()
}

// Command is a request to change a run.
type Command interface{ commandName() string }

// StartRun opens a new run. The one-active-run-per-business rule spans
// streams, so the event store enforces it when RunStarted is appended.
type StartRun struct {
	RunID      uuid.UUID
	BusinessID string
	WorkerID   string
	TotalCalls int
}

// RecordHeartbeat is a worker's sign of life with its cumulative progress.
// (The event it produces is Heartbeat.)
type RecordHeartbeat struct {
	CompletedCalls int
	FailedCalls    int
}

// RequestCancel asks the run to stop: gracefully when it is live, at once
// when it is already silent past the TTL.
type RequestCancel struct {
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

// FailStale ends a run that has been silent past the TTL.
type FailStale struct {
	DetectedBy string
}

func (StartRun) commandName() string        { return "StartRun" }
func (RecordHeartbeat) commandName() string { return "Heartbeat" }
func (RequestCancel) commandName() string   { return "RequestCancel" }
func (CompleteRun) commandName() string     { return "CompleteRun" }
func (FailStale) commandName() string       { return "FailStale" }

// Limits on free-text input.
const (
	MaxTextLen  = 2000
	MaxIDLen    = 128
	MaxCalls    = 10_000_000
	maxReasonLn = 500
)

var businessIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidateBusinessID returns a ValidationError unless id is 1-64 characters
// of letters, digits, '_', '.' and '-', starting with a letter or digit.
func ValidateBusinessID(id string) error {
	if !businessIDPattern.MatchString(id) {
		return Invalid("business_id", "must be 1-64 characters of letters, digits, '_', '.', '-'")
	}
	return nil
}

// Decide returns the events that cmd produces on state r at the server time
// now, or the reason it is refused: ErrRunNotFound, *RunEndedError (with the
// final state), *ValidationError, ErrRunExists or ErrNotStale. An empty slice
// with a nil error means the command is acknowledged and changes nothing.
func (p Policy) Decide(r Run, cmd Command, now time.Time) ([]Event, error) {
	now = now.UTC()
	if start, ok := cmd.(StartRun); ok {
		return decideStart(r, start, now)
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
	case CompleteRun:
		return decideComplete(r, c, now)
	case FailStale:
		return p.decideFailStale(r, c, now)
	}
	return nil, fmt.Errorf("unknown command %T", cmd)
}

func decideStart(r Run, c StartRun, now time.Time) ([]Event, error) {
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
	if err := v.err(); err != nil {
		return nil, err
	}
	if r.Exists() {
		if r.BusinessID == c.BusinessID && r.WorkerID == c.WorkerID && r.TotalCalls == c.TotalCalls {
			return nil, nil // a retried start: acknowledged, nothing new
		}
		return nil, ErrRunExists
	}
	return []Event{RunStarted{RunID: c.RunID, BusinessID: c.BusinessID, WorkerID: c.WorkerID,
		TotalCalls: c.TotalCalls, OccurredAt: now}}, nil
}

func (p Policy) decideHeartbeat(r Run, c RecordHeartbeat, now time.Time) ([]Event, error) {
	if err := checkProgress(r, c.CompletedCalls, c.FailedCalls); err != nil {
		return nil, err
	}
	deliver := r.CancelRequested && !r.CancelDelivered
	if !deliver && r.SilentFor(now) < p.HeartbeatMinInterval {
		return nil, nil // coalesced: acknowledged, not stored
	}
	return []Event{Heartbeat{CompletedCalls: c.CompletedCalls, FailedCalls: c.FailedCalls,
		CancelDelivered: deliver, OccurredAt: now}}, nil
}

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

func (p Policy) decideFailStale(r Run, c FailStale, now time.Time) ([]Event, error) {
	if !r.Silent(now, p.StaleAfter) {
		return nil, ErrNotStale
	}
	return []Event{RunStaleFailed{LastHeartbeatAt: r.LastHeartbeatAt, StaleAfter: Duration(p.StaleAfter),
		DetectedAt: now, AbandonedCalls: r.PendingCalls(), CancelRequested: r.CancelRequested,
		DetectedBy: c.DetectedBy}}, nil
}

// checkProgress enforces that counts never go backwards and never exceed the total.
func checkProgress(r Run, completed, failed int) error {
	var v validation
	switch {
	case completed < 0:
		v.add("completed_calls", "must not be negative")
	case completed < r.CompletedCalls:
		v.add("completed_calls", "must not go backwards (was %d, got %d)", r.CompletedCalls, completed)
	}
	switch {
	case failed < 0:
		v.add("failed_calls", "must not be negative")
	case failed < r.FailedCalls:
		v.add("failed_calls", "must not go backwards (was %d, got %d)", r.FailedCalls, failed)
	}
	if len(v) == 0 && completed+failed > r.TotalCalls {
		v.add("completed_calls", "completed_calls + failed_calls (%d) exceeds total_calls (%d)", completed+failed, r.TotalCalls)
	}
	return v.err()
}

// checkText refuses empty required text, invalid UTF-8, text longer than max
// bytes, and NUL characters, which PostgreSQL's jsonb cannot store.
func checkText(v *validation, field, s string, max int, required bool) {
	switch {
	case required && s == "":
		v.add(field, "is required")
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		v.add(field, "must not contain NUL characters")
	case len(s) > max:
		v.add(field, "must be at most %d bytes", max)
	}
}
