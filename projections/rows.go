package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runledger/runledger/domain"
)

// Querier is what read-model SQL needs: a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// RunRow is a run as the read models hold it.
type RunRow struct {
	domain.Run
	// LastPosition is the log position of the last event applied to the row.
	LastPosition int64
}

// columns of runs and active_runs, in table order.
var runColumns = []string{"run_id", "business_id", "worker_id", "status", "cancel_requested", "cancel_forced",
	"cancel_reason", "total_calls", "completed_calls", "failed_calls", "abandoned_calls", "started_at",
	"last_heartbeat_at", "ended_at", "end_reason", "last_error", "version", "last_position"}

const runColumnList = `run_id, business_id, worker_id, status, cancel_requested, cancel_forced,
	cancel_reason, total_calls, completed_calls, failed_calls, abandoned_calls, started_at,
	last_heartbeat_at, ended_at, end_reason, last_error, version, last_position`

// values returns the row's column values in runColumns order (NULL for empty optionals).
func (r RunRow) values() []any {
	return []any{r.ID, r.BusinessID, r.WorkerID, string(r.Status), r.CancelRequested, r.CancelForced,
		nullString(r.CancelReason), r.TotalCalls, r.CompletedCalls, r.FailedCalls, r.AbandonedCalls, r.StartedAt,
		r.LastHeartbeatAt, nullTime(r.EndedAt), nullString(string(r.EndReason)), nullString(r.LastError),
		r.Version, r.LastPosition}
}

func scanRunRow(row pgx.Row) (RunRow, error) {
	var (
		r                                RunRow
		status                           string
		cancelReason, endReason, lastErr *string
		endedAt                          *time.Time
	)
	err := row.Scan(&r.ID, &r.BusinessID, &r.WorkerID, &status, &r.CancelRequested, &r.CancelForced,
		&cancelReason, &r.TotalCalls, &r.CompletedCalls, &r.FailedCalls, &r.AbandonedCalls, &r.StartedAt,
		&r.LastHeartbeatAt, &endedAt, &endReason, &lastErr, &r.Version, &r.LastPosition)
	if err != nil {
		return RunRow{}, err
	}
	r.Status = domain.Status(status)
	r.CancelReason, r.LastError = deref(cancelReason), deref(lastErr)
	r.EndReason = domain.EndReason(deref(endReason))
	r.StartedAt, r.LastHeartbeatAt = r.StartedAt.UTC(), r.LastHeartbeatAt.UTC()
	if endedAt != nil {
		r.EndedAt = endedAt.UTC()
	}
	return r, nil
}

// queryRunRow returns the single row of sql, or ok=false when there is none.
func queryRunRow(ctx context.Context, q Querier, sql string, args ...any) (RunRow, bool, error) {
	r, err := scanRunRow(q.QueryRow(ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return RunRow{}, false, nil
	}
	if err != nil {
		return RunRow{}, false, err
	}
	return r, true, nil
}

// GetRun returns a run of the business from the runs read model; ok is false
// if there is none (or it belongs to another business).
func GetRun(ctx context.Context, q Querier, businessID string, runID uuid.UUID) (RunRow, bool, error) {
	r, ok, err := queryRunRow(ctx, q, `SELECT `+runColumnList+` FROM runs WHERE run_id = $1 AND business_id = $2`, runID, businessID)
	if err != nil {
		return RunRow{}, false, fmt.Errorf("get run %s: %w", runID, err)
	}
	return r, ok, nil
}

// GetOpenRun returns the business's row in active_runs: its run that has not
// ended. The caller still applies the TTL rule (RunRow.Active).
func GetOpenRun(ctx context.Context, q Querier, businessID string) (RunRow, bool, error) {
	r, ok, err := queryRunRow(ctx, q, `SELECT `+runColumnList+` FROM active_runs WHERE business_id = $1`, businessID)
	if err != nil {
		return RunRow{}, false, fmt.Errorf("get active run of %s: %w", businessID, err)
	}
	return r, ok, nil
}

// ListCursor is where a newest-first page of runs resumes.
type ListCursor struct {
	StartedAt time.Time
	RunID     uuid.UUID
}

// ListRuns returns up to limit runs of the business, newest first, after the
// cursor if one is given, and the cursor of the next page (nil at the end).
func ListRuns(ctx context.Context, q Querier, businessID string, limit int, after *ListCursor) ([]RunRow, *ListCursor, error) {
	sql := `SELECT ` + runColumnList + ` FROM runs WHERE business_id = $1`
	args := []any{businessID, limit + 1}
	if after != nil {
		sql += ` AND (started_at, run_id) < ($3, $4)`
		args = append(args, after.StartedAt, after.RunID)
	}
	sql += ` ORDER BY started_at DESC, run_id DESC LIMIT $2`
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list runs of %s: %w", businessID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunRow, error) { return scanRunRow(row) })
	if err != nil {
		return nil, nil, fmt.Errorf("list runs of %s: %w", businessID, err)
	}
	if len(out) <= limit {
		return out, nil, nil
	}
	out = out[:limit]
	last := out[limit-1]
	return out, &ListCursor{StartedAt: last.StartedAt, RunID: last.ID}, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
