package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// Payload is what a delivery's body holds (thin: enough to act on, with the
// run id to read the rest from the API).
type Payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      Data      `json:"data"`
}

// Data is a payload's subject: the run, where it stands, and why.
type Data struct {
	RunID      string `json:"run_id"`
	BusinessID string `json:"business_id"`
	Status     string `json:"status"`
	// Position is the event's log position (reads given ?after= see it).
	Position  int64  `json:"position"`
	EventID   string `json:"event_id"`
	EndReason string `json:"end_reason,omitempty"`
	// Why says how a run failed (worker_reported, stale) or was cancelled
	// (graceful, forced).
	Why            string `json:"why,omitempty"`
	Reason         string `json:"reason,omitempty"`
	Error          string `json:"error,omitempty"`
	WorkerID       string `json:"worker_id,omitempty"`
	TotalCalls     *int   `json:"total_calls,omitempty"`
	CompletedCalls *int   `json:"completed_calls,omitempty"`
	FailedCalls    *int   `json:"failed_calls,omitempty"`
	AbandonedCalls *int   `json:"abandoned_calls,omitempty"`
}

// previousEvent reads the event before rec in its stream (nil if none).
type previousEvent func(ctx context.Context, rec eventstore.Recorded) (domain.Event, error)

// payloadFor returns the webhook payload of rec, or ok=false for an event no
// webhook is about (heartbeats, a cancel request, which the run's end reports).
func payloadFor(ctx context.Context, rec eventstore.Recorded, prev previousEvent) (Payload, bool, error) {
	d := Data{RunID: rec.StreamID.String(), BusinessID: rec.BusinessID, Status: string(domain.StatusRunning),
		Position: rec.Position, EventID: rec.EventID.String()}
	p := Payload{Timestamp: rec.OccurredAt.UTC()}
	switch e := rec.Event.(type) {
	case domain.RunStarted:
		p.Type, d.WorkerID, d.TotalCalls = RunStarted, e.WorkerID, ptr(e.TotalCalls)
	case domain.PauseRequested:
		p.Type, d.Reason = RunPaused, e.Reason
	case domain.RunResumed:
		p.Type, d.Reason = RunResumed, e.Reason
	case domain.RunCompleted:
		d.CompletedCalls, d.FailedCalls, d.Error = ptr(e.CompletedCalls), ptr(e.FailedCalls), e.Error
		switch e.Outcome {
		case domain.OutcomeCompleted:
			p.Type, d.Status, d.EndReason = RunCompleted, string(domain.StatusCompleted), string(domain.EndCompleted)
		case domain.OutcomeFailed:
			p.Type, d.Status, d.EndReason, d.Why = RunFailed, string(domain.StatusFailed), string(domain.EndWorkerFailed), "worker_reported"
		case domain.OutcomeCancelled:
			p.Type, d.Status, d.EndReason, d.Why = RunCancelled, string(domain.StatusCancelled), string(domain.EndCancelled), "graceful"
			before, err := prev(ctx, rec)
			if err != nil {
				return p, false, err
			}
			if c, ok := before.(domain.CancelRequested); ok {
				d.Reason = c.Reason
				if c.Forced {
					d.EndReason, d.Why = string(domain.EndCancelForced), "forced"
				}
			}
		default:
			return p, false, nil
		}
	case domain.RunStaleFailed:
		d.AbandonedCalls = ptr(e.AbandonedCalls)
		if e.CancelRequested {
			p.Type, d.Status, d.EndReason, d.Why = RunCancelled, string(domain.StatusCancelled), string(domain.EndCancelled), "graceful"
		} else {
			p.Type, d.Status, d.EndReason, d.Why = RunFailed, string(domain.StatusFailed), string(domain.EndStale), "stale"
		}
	default:
		return p, false, nil
	}
	p.Data = d
	return p, true, nil
}

func ptr(n int) *int { return &n }

// previousFromTx reads the event before rec through tx.
func previousFromTx(tx pgx.Tx) previousEvent {
	return func(ctx context.Context, rec eventstore.Recorded) (domain.Event, error) {
		var (
			typ    string
			schema int
			data   []byte
		)
		err := tx.QueryRow(ctx, `SELECT type, schema_version, data FROM events WHERE stream_id = $1 AND stream_version = $2`,
			rec.StreamID, rec.Version-1).Scan(&typ, &schema, &data)
		if err == pgx.ErrNoRows {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the event before %d: %w", rec.Position, err)
		}
		return domain.UnmarshalEvent(typ, schema, json.RawMessage(data))
	}
}
