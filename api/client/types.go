package client

import (
	"encoding/json"
	"fmt"
	"time"
)

// Run statuses.
const (
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Run is a run as the server shows it. Fields the server does not send yet
// (pause, stall, per-run policy, position) stay zero.
type Run struct {
	RunID           string     `json:"run_id"`
	BusinessID      string     `json:"business_id"`
	Status          string     `json:"status"`
	Active          bool       `json:"active"`
	CancelRequested bool       `json:"cancel_requested"`
	TotalCalls      int        `json:"total_calls"`
	CompletedCalls  int        `json:"completed_calls"`
	FailedCalls     int        `json:"failed_calls"`
	PendingCalls    int        `json:"pending_calls"`
	AbandonedCalls  int        `json:"abandoned_calls"`
	WorkerID        string     `json:"worker_id"`
	StartedAt       time.Time  `json:"started_at"`
	LastHeartbeatAt time.Time  `json:"last_heartbeat_at"`
	StaleAt         *time.Time `json:"stale_at"`
	EndedAt         *time.Time `json:"ended_at"`
	EndReason       string     `json:"end_reason"`
	LastError       string     `json:"last_error"`
	Paused          bool       `json:"paused"`
	PausedAt        *time.Time `json:"paused_at"`
	PauseReason     string     `json:"pause_reason"`
	Stalled         bool       `json:"stalled"`
	StalledSince    *time.Time `json:"stalled_since"`
	StaleAfter      Duration   `json:"stale_after"`
	StallAfter      Duration   `json:"stall_after"`
	Version         int64      `json:"version"`
	Position        int64      `json:"position"`
	ServerTime      time.Time  `json:"server_time"`
}

// Ended reports whether the run has reached its terminal status.
func (r Run) Ended() bool { return r.Status != "" && r.Status != StatusRunning }

// Policy is the service's policy (GET /v1/policy).
type Policy struct {
	StaleAfter           Duration `json:"stale_after"`
	HeartbeatMinInterval Duration `json:"heartbeat_min_interval"`
	StallAfter           Duration `json:"stall_after"`
}

// Duration is a time.Duration that reads and writes Go duration strings
// ("15m0s"), as the contract's JSON does.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string (null leaves d unchanged); it
// returns an error for anything else.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// HeartbeatAnswer is the server's answer to a heartbeat.
type HeartbeatAnswer struct {
	Run             Run
	CancelRequested bool
	// PauseRequested is the answer's pause_requested (or, from a server that
	// does not send it, the run's paused).
	PauseRequested bool
	// Recorded is false when the heartbeat was coalesced (acknowledged, not stored).
	Recorded bool
}

type heartbeatJSON struct {
	Run             Run   `json:"run"`
	CancelRequested bool  `json:"cancel_requested"`
	PauseRequested  *bool `json:"pause_requested"`
	Recorded        bool  `json:"recorded"`
}

func (h heartbeatJSON) answer() HeartbeatAnswer {
	a := HeartbeatAnswer{Run: h.Run, CancelRequested: h.CancelRequested, PauseRequested: h.Run.Paused, Recorded: h.Recorded}
	if h.PauseRequested != nil {
		a.PauseRequested = *h.PauseRequested
	}
	return a
}

// problemJSON is an RFC 9457 problem as the server sends it.
type problemJSON struct {
	Code   string       `json:"code"`
	Detail string       `json:"detail"`
	Errors []FieldError `json:"errors"`
	RunID  string       `json:"run_id"`
	Run    *Run         `json:"run"`
}
