package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
)

// RecordedColumns are the columns ScanRecorded reads, in order.
const RecordedColumns = `position, event_id, stream_id, stream_version, business_id, type, schema_version,
	data, metadata, occurred_at, recorded_at`

// ReadStream returns all events of one run in version order.
func (s *Store) ReadStream(ctx context.Context, runID uuid.UUID) ([]Recorded, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+RecordedColumns+` FROM events WHERE stream_id = $1 ORDER BY stream_version`, runID)
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", runID, err)
	}
	return collectRecorded(rows)
}

// BusinessQuery selects one business's events.
type BusinessQuery struct {
	BusinessID string
	// RunID, if set, keeps only that run's events.
	RunID uuid.UUID
	// Since and Until bound occurred_at: Since <= t < Until; zero means unbounded.
	Since, Until time.Time
	// Through, if set, keeps events that occurred at or before it (t <= Through):
	// what happened up to and including an instant, for replay.
	Through time.Time
	// After resumes a page: only events ordered after (occurred_at, position) of this cursor.
	After *Cursor
	// Limit caps the result; 0 means no limit.
	Limit int
}

// Cursor is a position in a business's timeline.
type Cursor struct {
	OccurredAt time.Time
	Position   int64
}

// ReadBusiness returns one business's events ordered by (occurred_at,
// position), which is the order the server decided them in.
func (s *Store) ReadBusiness(ctx context.Context, q BusinessQuery) ([]Recorded, error) {
	sql := `SELECT ` + RecordedColumns + ` FROM events WHERE business_id = $1`
	args := []any{q.BusinessID}
	if q.RunID != uuid.Nil {
		args = append(args, q.RunID)
		sql += fmt.Sprintf(` AND stream_id = $%d`, len(args))
	}
	if !q.Since.IsZero() {
		args = append(args, q.Since)
		sql += fmt.Sprintf(` AND occurred_at >= $%d`, len(args))
	}
	if !q.Until.IsZero() {
		args = append(args, q.Until)
		sql += fmt.Sprintf(` AND occurred_at < $%d`, len(args))
	}
	if !q.Through.IsZero() {
		args = append(args, q.Through)
		sql += fmt.Sprintf(` AND occurred_at <= $%d`, len(args))
	}
	if q.After != nil {
		args = append(args, q.After.OccurredAt, q.After.Position)
		sql += fmt.Sprintf(` AND (occurred_at, position) > ($%d, $%d)`, len(args)-1, len(args))
	}
	sql += ` ORDER BY occurred_at, position`
	if q.Limit > 0 {
		args = append(args, q.Limit)
		sql += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read business %s: %w", q.BusinessID, err)
	}
	return collectRecorded(rows)
}

// ReadAll returns up to limit events with a position greater than after, in
// position order: the whole log in batches.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]Recorded, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+RecordedColumns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read log after %d: %w", after, err)
	}
	return collectRecorded(rows)
}

func collectRecorded(rows pgx.Rows) ([]Recorded, error) {
	defer rows.Close()
	var out []Recorded
	for rows.Next() {
		r, err := ScanRecorded(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ScanRecorded scans the columns of RecordedColumns and decodes the event.
func ScanRecorded(row pgx.Row) (Recorded, error) { return ScanRecordedWith(row) }

// ScanRecordedWith is ScanRecorded for a row that has extra leading columns,
// scanned into lead.
func ScanRecordedWith(row pgx.Row, lead ...any) (Recorded, error) {
	var (
		r    Recorded
		meta []byte
	)
	if err := row.Scan(append(lead, &r.Position, &r.EventID, &r.StreamID, &r.Version, &r.BusinessID, &r.Type,
		&r.SchemaVersion, &r.Data, &meta, &r.OccurredAt, &r.RecordedAt)...); err != nil {
		return Recorded{}, err
	}
	if err := DecodeStored(&r, meta); err != nil {
		return Recorded{}, err
	}
	r.OccurredAt, r.RecordedAt = r.OccurredAt.UTC(), r.RecordedAt.UTC()
	return r, nil
}

// DecodeStored decodes a scanned event: its stored metadata into
// r.Metadata, and r.Data (of r.Type and r.SchemaVersion) into r.Event.
func DecodeStored(r *Recorded, meta []byte) error {
	var err error
	if r.Metadata, err = DecodeMetadata(meta); err != nil {
		return fmt.Errorf("event %d metadata: %w", r.Position, err)
	}
	if r.Event, err = domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Data); err != nil {
		return fmt.Errorf("event %d: %w", r.Position, err)
	}
	return nil
}

// LastStartedRun returns the id of the business's run most recently started
// at or before at, and false if none was.
func (s *Store) LastStartedRun(ctx context.Context, businessID string, at time.Time) (uuid.UUID, bool, error) {
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, `SELECT stream_id FROM events WHERE business_id = $1 AND type = 'RunStarted' AND occurred_at <= $2
		ORDER BY occurred_at DESC, position DESC LIMIT 1`, businessID, at).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("last run of %s: %w", businessID, err)
	}
	return id, true, nil
}

// PositionOffset returns the subscriber-order offset of the event at
// position (its transaction and position), and false if the log holds no
// event there.
func (s *Store) PositionOffset(ctx context.Context, position int64) (txID uint64, ok bool, err error) {
	var tx int64
	err = s.pool.QueryRow(ctx, `SELECT transaction_id::text::bigint FROM events WHERE position = $1`, position).Scan(&tx)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("event at %d: %w", position, err)
	}
	return uint64(tx), true, nil
}

// LastOfEvents returns the highest stream version and log position among the
// events of stream streamID whose ids are in ids, and zeros when none of them
// is stored (a command looking for the events its first attempt appended).
func (s *Store) LastOfEvents(ctx context.Context, streamID uuid.UUID, ids []uuid.UUID) (version, position int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT coalesce(max(stream_version), 0), coalesce(max(position), 0)
		FROM events WHERE event_id = ANY($1) AND stream_id = $2`, ids, streamID).Scan(&version, &position)
	if err != nil {
		return 0, 0, fmt.Errorf("events of run %s: %w", streamID, err)
	}
	return version, position, nil
}
