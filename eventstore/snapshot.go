package eventstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// storedRun is a run's state as run_snapshots.state stores it: JSON, under
// these keys. It is the storage format, kept apart from domain.Run (whose
// JSON tags may follow other needs) so that renaming a field of the domain
// cannot silently zero the state every stored snapshot decodes to: a change
// here is a change of stored data, and snapshot_test.go's golden file (and
// its snapshot as the code before this type stored it) fails until it is
// made on purpose, with a migration for the rows already stored.
//
// Other writers of the format: migration 0003 (renamed last_activity_at to
// last_heartbeat_at in place) and internal/longlog's seed, which writes
// snapshots in SQL (its seed test loads them through Store.Load and compares
// them with the fold of their events).
type storedRun struct {
	ID                uuid.UUID      `json:"run_id"`
	BusinessID        string         `json:"business_id"`
	WorkerID          string         `json:"worker_id"`
	Status            string         `json:"status"`
	CancelRequested   bool           `json:"cancel_requested"`
	CancelReason      string         `json:"cancel_reason,omitempty"`
	CancelRequestedBy string         `json:"cancel_requested_by,omitempty"`
	CancelDelivered   bool           `json:"cancel_delivered,omitempty"`
	CancelForced      bool           `json:"cancel_forced,omitempty"`
	TotalCalls        int            `json:"total_calls"`
	CompletedCalls    int            `json:"completed_calls"`
	FailedCalls       int            `json:"failed_calls"`
	StartedAt         time.Time      `json:"started_at"`
	LastHeartbeatAt   time.Time      `json:"last_heartbeat_at"`
	EndedAt           time.Time      `json:"ended_at,omitzero"`
	EndReason         string         `json:"end_reason,omitempty"`
	LastError         string         `json:"last_error,omitempty"`
	AbandonedCalls    int            `json:"abandoned_calls,omitempty"`
	StaleAfter        storedDuration `json:"stale_after,omitzero"`
	StallAfter        storedDuration `json:"stall_after,omitzero"`
	Paused            bool           `json:"paused,omitempty"`
	PausedAt          time.Time      `json:"paused_at,omitzero"`
	PauseReason       string         `json:"pause_reason,omitempty"`
	PausedBy          string         `json:"paused_by,omitempty"`
	LastProgressAt    time.Time      `json:"last_progress_at,omitzero"`
	Version           int64          `json:"version"`
}

// storedDuration is a duration as the snapshot stores it: Go's string form
// ("15m0s").
type storedDuration time.Duration

func (d storedDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *storedDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = storedDuration(v)
	return nil
}

// toStored is r in its storage form.
func toStored(r domain.Run) storedRun {
	return storedRun{
		ID: r.ID, BusinessID: r.BusinessID, WorkerID: r.WorkerID, Status: string(r.Status),
		CancelRequested: r.CancelRequested, CancelReason: r.CancelReason, CancelRequestedBy: r.CancelRequestedBy,
		CancelDelivered: r.CancelDelivered, CancelForced: r.CancelForced,
		TotalCalls: r.TotalCalls, CompletedCalls: r.CompletedCalls, FailedCalls: r.FailedCalls,
		StartedAt: r.StartedAt, LastHeartbeatAt: r.LastHeartbeatAt, EndedAt: r.EndedAt,
		EndReason: string(r.EndReason), LastError: r.LastError, AbandonedCalls: r.AbandonedCalls,
		StaleAfter: storedDuration(r.StaleAfter), StallAfter: storedDuration(r.StallAfter),
		Paused: r.Paused, PausedAt: r.PausedAt, PauseReason: r.PauseReason, PausedBy: r.PausedBy,
		LastProgressAt: r.LastProgressAt, Version: r.Version,
	}
}

// run is the domain's state of a stored snapshot.
func (s storedRun) run() domain.Run {
	return domain.Run{
		ID: s.ID, BusinessID: s.BusinessID, WorkerID: s.WorkerID, Status: domain.Status(s.Status),
		CancelRequested: s.CancelRequested, CancelReason: s.CancelReason, CancelRequestedBy: s.CancelRequestedBy,
		CancelDelivered: s.CancelDelivered, CancelForced: s.CancelForced,
		TotalCalls: s.TotalCalls, CompletedCalls: s.CompletedCalls, FailedCalls: s.FailedCalls,
		StartedAt: s.StartedAt, LastHeartbeatAt: s.LastHeartbeatAt, EndedAt: s.EndedAt,
		EndReason: domain.EndReason(s.EndReason), LastError: s.LastError, AbandonedCalls: s.AbandonedCalls,
		StaleAfter: domain.Duration(s.StaleAfter), StallAfter: domain.Duration(s.StallAfter),
		Paused: s.Paused, PausedAt: s.PausedAt, PauseReason: s.PauseReason, PausedBy: s.PausedBy,
		LastProgressAt: s.LastProgressAt, Version: s.Version,
	}
}

// encodeRun is r as run_snapshots.state stores it.
func encodeRun(r domain.Run) ([]byte, error) {
	return json.Marshal(toStored(r))
}

// decodeRun is the run a stored snapshot holds.
func decodeRun(raw []byte) (domain.Run, error) {
	var s storedRun
	if err := json.Unmarshal(raw, &s); err != nil {
		return domain.Run{}, fmt.Errorf("decode run snapshot: %w", err)
	}
	return s.run(), nil
}
