package api

import (
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/projections"
)

// RunView is a run as the API shows it. stale_at and server_time let a page
// judge staleness itself; active is the server's verdict at server_time.
type RunView struct {
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
	EndReason       *string    `json:"end_reason"`
	LastError       *string    `json:"last_error"`
	// Paused is true while a pause is in force (the worker keeps
	// heartbeating and stops dialing); PausedAt and PauseReason describe it.
	Paused      bool       `json:"paused"`
	PausedAt    *time.Time `json:"paused_at"`
	PauseReason *string    `json:"pause_reason"`
	// Stalled is true when the run is active, not paused, and its heartbeats
	// have carried no progress for its stall_after; StalledSince is when
	// that became so. A stall is a flag, not an ending.
	Stalled        bool       `json:"stalled"`
	StalledSince   *time.Time `json:"stalled_since"`
	LastProgressAt time.Time  `json:"last_progress_at"`
	// StaleAfter and StallAfter are the run's own policy (the service's
	// values for a run started before runs recorded theirs).
	StaleAfter string `json:"stale_after"`
	StallAfter string `json:"stall_after"`
	Version    int64  `json:"version"`
	// Position is the log position this state reflects (a command's answer:
	// the position it produced); pass it as ?after= to read at least this.
	Position   int64     `json:"position,omitempty"`
	ServerTime time.Time `json:"server_time"`
}

// view renders r, which reflects the log up to position, at the server's
// current time.
func (s *Server) view(r domain.Run, position int64) RunView {
	v := viewAt(r, s.now(), s.policy)
	v.Position = position
	return v
}

// rowView renders a read-model row.
func (s *Server) rowView(row projections.RunRow) RunView { return s.view(row.Run, row.LastPosition) }

// viewAt renders r at now, judged by the run's own policy (p for what it
// did not record).
func viewAt(r domain.Run, now time.Time, p domain.Policy) RunView {
	v := RunView{
		RunID: r.ID.String(), BusinessID: r.BusinessID, Status: string(r.Status), Active: r.Active(now, p.StaleAfter),
		CancelRequested: r.CancelRequested, TotalCalls: r.TotalCalls, CompletedCalls: r.CompletedCalls,
		FailedCalls: r.FailedCalls, PendingCalls: r.PendingCalls(), AbandonedCalls: r.AbandonedCalls,
		WorkerID: r.WorkerID, StartedAt: utc(r.StartedAt), LastHeartbeatAt: utc(r.LastHeartbeatAt),
		LastProgressAt: utc(r.ProgressAt()), StaleAfter: p.StaleAfterFor(r).String(), StallAfter: p.StallAfterFor(r).String(),
		Version: r.Version, ServerTime: utc(now),
	}
	if r.Ended() {
		ended, reason := utc(r.EndedAt), string(r.EndReason)
		v.EndedAt, v.EndReason = &ended, &reason
	} else {
		stale := utc(r.StaleAt(p.StaleAfter))
		v.StaleAt = &stale
		if r.Paused {
			at := utc(r.PausedAt)
			v.Paused, v.PausedAt = true, &at
			if r.PauseReason != "" {
				v.PauseReason = &r.PauseReason
			}
		}
		if p.Stalled(r, now) {
			since := utc(p.StalledSince(r))
			v.Stalled, v.StalledSince = true, &since
		}
	}
	if r.LastError != "" {
		v.LastError = &r.LastError
	}
	return v
}

// utc is t in UTC at the database's microsecond precision, so a run reads the
// same from a command's answer and from the read models.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
