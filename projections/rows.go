package projections

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/pguuid"
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

// storedRow is a RunRow as the runs and active_runs tables store it: one
// field per column, in table order, with its SQL type. It is the only place
// the read models' columns are listed; runColumns, runColumnList, the scans
// and the batched writes are all derived from it.
type storedRow struct {
	RunID           uuid.UUID  `db:"run_id" sql:"uuid"`
	BusinessID      string     `db:"business_id" sql:"text"`
	WorkerID        string     `db:"worker_id" sql:"text"`
	Status          string     `db:"status" sql:"text"`
	CancelRequested bool       `db:"cancel_requested" sql:"bool"`
	CancelForced    bool       `db:"cancel_forced" sql:"bool"`
	CancelReason    *string    `db:"cancel_reason" sql:"text"`
	TotalCalls      int        `db:"total_calls" sql:"int"`
	CompletedCalls  int        `db:"completed_calls" sql:"int"`
	FailedCalls     int        `db:"failed_calls" sql:"int"`
	AbandonedCalls  int        `db:"abandoned_calls" sql:"int"`
	StartedAt       time.Time  `db:"started_at" sql:"timestamptz"`
	LastHeartbeatAt time.Time  `db:"last_heartbeat_at" sql:"timestamptz"`
	EndedAt         *time.Time `db:"ended_at" sql:"timestamptz"`
	EndReason       *string    `db:"end_reason" sql:"text"`
	LastError       *string    `db:"last_error" sql:"text"`
	Version         int64      `db:"version" sql:"bigint"`
	LastPosition    int64      `db:"last_position" sql:"bigint"`
	Paused          bool       `db:"paused" sql:"bool"`
	PausedAt        *time.Time `db:"paused_at" sql:"timestamptz"`
	PauseReason     *string    `db:"pause_reason" sql:"text"`
	LastProgressAt  *time.Time `db:"last_progress_at" sql:"timestamptz"`
	// StaleAfter and StallAfter are the run's own policy (NULL: the service's).
	StaleAfter pgtype.Interval `db:"stale_after" sql:"interval"`
	StallAfter pgtype.Interval `db:"stall_after" sql:"interval"`
}

func (r RunRow) stored() storedRow {
	return storedRow{RunID: r.ID, BusinessID: r.BusinessID, WorkerID: r.WorkerID, Status: string(r.Status),
		CancelRequested: r.CancelRequested, CancelForced: r.CancelForced, CancelReason: optional(r.CancelReason),
		TotalCalls: r.TotalCalls, CompletedCalls: r.CompletedCalls, FailedCalls: r.FailedCalls,
		AbandonedCalls: r.AbandonedCalls, StartedAt: r.StartedAt, LastHeartbeatAt: r.LastHeartbeatAt,
		EndedAt: optionalTime(r.EndedAt), EndReason: optional(string(r.EndReason)), LastError: optional(r.LastError),
		Version: r.Version, LastPosition: r.LastPosition, Paused: r.Paused, PausedAt: optionalTime(r.PausedAt),
		PauseReason: optional(r.PauseReason), LastProgressAt: optionalTime(r.LastProgressAt),
		StaleAfter: interval(time.Duration(r.StaleAfter)), StallAfter: interval(time.Duration(r.StallAfter))}
}

func (s storedRow) runRow() RunRow {
	r := RunRow{LastPosition: s.LastPosition}
	r.ID, r.BusinessID, r.WorkerID, r.Status = s.RunID, s.BusinessID, s.WorkerID, domain.Status(s.Status)
	r.CancelRequested, r.CancelForced, r.CancelReason = s.CancelRequested, s.CancelForced, deref(s.CancelReason)
	r.TotalCalls, r.CompletedCalls, r.FailedCalls, r.AbandonedCalls = s.TotalCalls, s.CompletedCalls, s.FailedCalls, s.AbandonedCalls
	r.StartedAt, r.LastHeartbeatAt = s.StartedAt.UTC(), s.LastHeartbeatAt.UTC()
	r.EndedAt = derefTime(s.EndedAt)
	r.EndReason, r.LastError, r.Version = domain.EndReason(deref(s.EndReason)), deref(s.LastError), s.Version
	r.Paused, r.PausedAt, r.PauseReason = s.Paused, derefTime(s.PausedAt), deref(s.PauseReason)
	r.LastProgressAt = derefTime(s.LastProgressAt)
	r.StaleAfter, r.StallAfter = domain.Duration(duration(s.StaleAfter)), domain.Duration(duration(s.StallAfter))
	return r
}

// onlyProgressMoved reports whether next is prev moved by progress alone:
// the same run, differing (if at all) only in the columns updateProgress
// writes. A field that is not a column (CancelDelivered, …) or a time that
// differs in representation only makes it false: the full update then
// writes the row, which is always right.
func onlyProgressMoved(prev, next RunRow) bool {
	probe := next
	probe.CompletedCalls, probe.FailedCalls = prev.CompletedCalls, prev.FailedCalls
	probe.LastHeartbeatAt, probe.LastProgressAt = prev.LastHeartbeatAt, prev.LastProgressAt
	probe.Version, probe.LastPosition = prev.Version, prev.LastPosition
	return probe == prev
}

// interval stores a duration; zero (none recorded) is NULL.
func interval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: d != 0}
}

func duration(i pgtype.Interval) time.Duration {
	if !i.Valid {
		return 0
	}
	return time.Duration(i.Microseconds)*time.Microsecond + time.Duration(i.Days)*24*time.Hour
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// column is one column of the read models: its name and SQL type.
type column struct{ name, sqlType string }

// runColumns are the read models' columns in table order; runColumnList is
// the same as a select list.
var (
	runColumns    = columnsOf(reflect.TypeFor[storedRow]())
	runColumnList = columnList(runColumns)
)

func columnsOf(t reflect.Type) []column {
	cols := make([]column, t.NumField())
	for i := range cols {
		f := t.Field(i)
		cols[i] = column{name: f.Tag.Get("db"), sqlType: f.Tag.Get("sql")}
	}
	return cols
}

func columnList(cols []column) string { return strings.Join(columnNames(cols), ", ") }

func columnNames(cols []column) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return names
}

// values returns the row's column values in runColumns order (nil for NULL).
func (r RunRow) values() []any {
	v := reflect.ValueOf(r.stored())
	out := make([]any, v.NumField())
	for i := range out {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer && f.IsNil() {
			continue
		}
		out[i] = reflect.Indirect(f).Interface()
	}
	return out
}

// columnArrays turns rows into one array per column (of the column's Go
// type, pointers for nullable ones), for statements over unnest(...).
func columnArrays(rows []RunRow) []any {
	t := reflect.TypeFor[storedRow]()
	arrays := make([]reflect.Value, t.NumField())
	for i := range arrays {
		arrays[i] = reflect.MakeSlice(reflect.SliceOf(t.Field(i).Type), 0, len(rows))
	}
	for _, r := range rows {
		v := reflect.ValueOf(r.stored())
		for i := range arrays {
			arrays[i] = reflect.Append(arrays[i], v.Field(i))
		}
	}
	out := make([]any, len(arrays))
	for i, a := range arrays {
		out[i] = a.Interface()
		if ids, ok := out[i].([]uuid.UUID); ok {
			out[i] = pguuid.Raw(ids)
		}
	}
	return out
}

// scanRunRow reads one row selected with runColumnList.
func scanRunRow(row pgx.CollectableRow) (RunRow, error) {
	s, err := pgx.RowToStructByPos[storedRow](row)
	if err != nil {
		return RunRow{}, err
	}
	return s.runRow(), nil
}

// queryRunRow returns the single row of sql, or ok=false when there is none.
func queryRunRow(ctx context.Context, q Querier, sql string, args ...any) (RunRow, bool, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return RunRow{}, false, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanRunRow)
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

// AllOpenRuns returns every row of active_runs: each business's run that has
// not ended, for gauges that judge them with the domain's rules. Its cost
// follows the number of open runs.
func AllOpenRuns(ctx context.Context, q Querier) ([]RunRow, error) {
	rows, err := q.Query(ctx, `SELECT `+runColumnList+` FROM active_runs`)
	if err != nil {
		return nil, fmt.Errorf("open runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanRunRow)
	if err != nil {
		return nil, fmt.Errorf("open runs: %w", err)
	}
	return out, nil
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
	out, err := pgx.CollectRows(rows, scanRunRow)
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

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
