package domain

import (
	"encoding/json"
	"fmt"
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

// The stored event type names (the client's names; never rename them).
const (
	TypeRunStarted      = "RunStarted"
	TypeHeartbeat       = "Heartbeat"
	TypeCancelRequested = "CancelRequested"
	TypeRunCompleted    = "RunCompleted"
	TypeRunStaleFailed  = "RunStaleFailed"
)

// SchemaVersion is the payload version every event is written with today.
const SchemaVersion = 1

// RunStarted opens a run's stream.
type RunStarted struct {
	RunID      uuid.UUID `json:"run_id"`
	BusinessID string    `json:"business_id"`
	WorkerID   string    `json:"worker_id"`
	TotalCalls int       `json:"total_calls"`
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

// RunStaleFailed ends a run whose worker went silent past the TTL. If a
// cancel had been requested the run ends as cancelled, otherwise as failed.
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

// MarshalEvent returns the stored form of e: its type, schema version and payload.
func MarshalEvent(e Event) (typ string, version int, data []byte, err error) {
	data, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("marshal %s: %w", e.EventType(), err)
	}
	return e.EventType(), SchemaVersion, data, nil
}

// UnmarshalEvent decodes a stored event. It returns an error for an unknown
// type or a schema version newer than this code understands.
func UnmarshalEvent(typ string, version int, data []byte) (Event, error) {
	if version < 1 || version > SchemaVersion {
		return nil, fmt.Errorf("event %s: unsupported schema version %d", typ, version)
	}
	var (
		e   Event
		err error
	)
	switch typ {
	case TypeRunStarted:
		e, err = decode[RunStarted](data)
	case TypeHeartbeat:
		e, err = decode[Heartbeat](data)
	case TypeCancelRequested:
		e, err = decode[CancelRequested](data)
	case TypeRunCompleted:
		e, err = decode[RunCompleted](data)
	case TypeRunStaleFailed:
		e, err = decode[RunStaleFailed](data)
	default:
		return nil, fmt.Errorf("unknown event type %q", typ)
	}
	if err != nil {
		return nil, fmt.Errorf("event %s v%d: %w", typ, version, err)
	}
	return e, nil
}

func decode[T Event](data []byte) (Event, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Duration is a time.Duration that is stored as a Go duration string ("15m0s").
type Duration time.Duration

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON decodes a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }
