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
	Version         int64      `json:"version"`
	// Position is the log position this state reflects (a command's answer:
	// the position it produced); pass it as ?after= to read at least this.
	Position   int64     `json:"position,omitempty"`
	ServerTime time.Time `json:"server_time"`
}

// view renders r, which reflects the log up to position, at the server's
// current time.
func (s *Server) view(r domain.Run, position int64) RunView {
	v := viewAt(r, s.now(), s.policy.StaleAfter)
	v.Position = position
	return v
}

// rowView renders a read-model row.
func (s *Server) rowView(row projections.RunRow) RunView { return s.view(row.Run, row.LastPosition) }

func viewAt(r domain.Run, now time.Time, ttl time.Duration) RunView {
	v := RunView{
		RunID: r.ID.String(), BusinessID: r.BusinessID, Status: string(r.Status), Active: r.Active(now, ttl),
		CancelRequested: r.CancelRequested, TotalCalls: r.TotalCalls, CompletedCalls: r.CompletedCalls,
		FailedCalls: r.FailedCalls, PendingCalls: r.PendingCalls(), AbandonedCalls: r.AbandonedCalls,
		WorkerID: r.WorkerID, StartedAt: utc(r.StartedAt), LastHeartbeatAt: utc(r.LastHeartbeatAt),
		Version: r.Version, ServerTime: utc(now),
	}
	if r.Ended() {
		ended, reason := utc(r.EndedAt), string(r.EndReason)
		v.EndedAt, v.EndReason = &ended, &reason
	} else {
		stale := utc(r.StaleAt(ttl))
		v.StaleAt = &stale
	}
	if r.LastError != "" {
		v.LastError = &r.LastError
	}
	return v
}

// utc is t in UTC at the database's microsecond precision, so a run reads the
// same from a command's answer and from the read models.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
