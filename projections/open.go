package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OpenCursor is where a longest-silence-first page of open runs resumes.
type OpenCursor struct {
	LastHeartbeatAt time.Time
	BusinessID      string
}

// OpenRunsQuery selects open runs for ListOpenRuns.
type OpenRunsQuery struct {
	// BusinessID restricts the list to one business; empty means every business.
	BusinessID string
	// Limit is the page size (at least 1).
	Limit int
	// After resumes after the last row of the previous page.
	After *OpenCursor
}

// openRunsSQL is the query of ListOpenRuns and its arguments. It reads
// active_runs, which holds the open runs only, and sorts them for the page
// (a top-N sort bounded by the limit), or reads the primary key when one
// business is asked for. No index holds last_heartbeat_at: every heartbeat
// moves it, and without such an index its update of active_runs is HOT
// (migration 0011).
func openRunsSQL(q OpenRunsQuery) (string, []any) {
	sql := `SELECT ` + runColumnList + ` FROM active_runs WHERE true`
	args := []any{q.Limit + 1}
	if q.BusinessID != "" {
		args = append(args, q.BusinessID)
		sql += fmt.Sprintf(` AND business_id = $%d`, len(args))
	}
	if q.After != nil {
		args = append(args, q.After.LastHeartbeatAt, q.After.BusinessID)
		sql += fmt.Sprintf(` AND (last_heartbeat_at, business_id) > ($%d, $%d)`, len(args)-1, len(args))
	}
	return sql + ` ORDER BY last_heartbeat_at, business_id LIMIT $1`, args
}

// ListOpenRuns returns up to q.Limit open runs (runs that have not ended, live
// or silent: the caller judges liveness), longest silence first, and the
// cursor of the next page (nil at the end). It returns an error if the query
// fails.
//
// The order is by a value heartbeats move, so a run that heartbeats while an
// operator pages may move past the cursor and be listed twice or not at all
// on later pages; the first page is always exact.
func ListOpenRuns(ctx context.Context, db Querier, q OpenRunsQuery) ([]RunRow, *OpenCursor, error) {
	if q.Limit < 1 {
		return nil, nil, fmt.Errorf("list open runs: limit %d must be at least 1", q.Limit)
	}
	sql, args := openRunsSQL(q)
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list open runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunRow, error) { return scanRunRow(row) })
	if err != nil {
		return nil, nil, fmt.Errorf("list open runs: %w", err)
	}
	if len(out) <= q.Limit {
		return out, nil, nil
	}
	out = out[:q.Limit]
	last := out[q.Limit-1]
	return out, &OpenCursor{LastHeartbeatAt: last.LastHeartbeatAt, BusinessID: last.BusinessID}, nil
}
