// Package eventstore owns the log: all SQL that appends to and reads the
// events table and the write-side run snapshots kept beside it. Appends use
// optimistic concurrency on the stream version; the snapshot row of a run is
// updated in the same transaction, so loading a run costs one row whatever
// the length of its stream.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
)

// ErrVersionConflict is returned when a stream moved past the expected version.
var ErrVersionConflict = errors.New("stream version conflict")

// VersionConflictError says which stream moved, and where to.
type VersionConflictError struct {
	StreamID uuid.UUID
	Expected int64
	Actual   int64
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("stream %s: expected version %d, found %d", e.StreamID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrVersionConflict) true.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

// Metadata says who and what caused an event.
type Metadata struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	// Actor is "worker:<id>", "user:<subject>", "operator:<subject>" or "reaper:<instance>".
	Actor     string `json:"actor,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// NewEvent is an event to append, with the id that makes retries idempotent.
type NewEvent struct {
	ID       uuid.UUID
	Event    domain.Event
	Metadata Metadata
}

// Recorded is an event as stored in the log.
type Recorded struct {
	Position      int64           `json:"position"`
	EventID       uuid.UUID       `json:"event_id"`
	StreamID      uuid.UUID       `json:"run_id"`
	Version       int64           `json:"version"`
	BusinessID    string          `json:"business_id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      Metadata        `json:"metadata"`
	OccurredAt    time.Time       `json:"occurred_at"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Event         domain.Event    `json:"-"`
}

// AppendResult is the state of the stream after an append.
type AppendResult struct {
	Run domain.Run
	// LastPosition is the global position of the last event appended.
	LastPosition int64
	// Duplicate is true when the events were already in the log (a retry).
	Duplicate bool
}

// Store is the event store on one PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Append adds events to the stream streamID if its version is still
// expectedVersion (0 for a new stream), and updates the run's snapshot in the
// same statement. It returns *VersionConflictError if the stream moved,
// *domain.RunEndedError if the run has ended (nothing follows a terminal
// event), *domain.ActiveRunExistsError if the append would open a second run
// for a business, and succeeds without writing if the same event ids are
// already in the log (an idempotent retry).
func (s *Store) Append(ctx context.Context, streamID uuid.UUID, expectedVersion int64, events []NewEvent) (AppendResult, error) {
	base, err := s.Load(ctx, streamID)
	if err != nil {
		return AppendResult{}, err
	}
	if base.Version != expectedVersion {
		if dup, err := s.duplicate(ctx, streamID, events); err == nil {
			return dup, nil
		}
		return AppendResult{}, &VersionConflictError{StreamID: streamID, Expected: expectedVersion, Actual: base.Version}
	}
	return s.AppendTo(ctx, streamID, base, events)
}

// AppendTo appends events to a stream whose current state the caller has
// loaded (base; the zero Run for a new stream): it is Append without the
// load, for callers that decided on base. Same errors as Append.
func (s *Store) AppendTo(ctx context.Context, streamID uuid.UUID, base domain.Run, events []NewEvent) (AppendResult, error) {
	if len(events) == 0 {
		return AppendResult{}, errors.New("append: no events")
	}
	if base.Ended() {
		return AppendResult{}, &domain.RunEndedError{Final: base}
	}
	next, cols, err := encodeAppend(base, events)
	if err != nil {
		return AppendResult{}, err
	}
	var last *int64
	query := appendExisting
	if base.Version == 0 {
		query = appendNew
	}
	err = s.pool.QueryRow(ctx, query, streamID, next.Version, next.Ended(), next.LastHeartbeatAt,
		cols.state, next.BusinessID, cols.ids, cols.versions, cols.types, cols.schemas, cols.data, cols.meta, cols.occurred,
		base.Version).Scan(&last)
	if err == nil && last != nil {
		return AppendResult{Run: next, LastPosition: *last}, nil
	}
	if err == nil { // the snapshot did not match: another append won, or the run ended
		if dup, derr := s.duplicate(ctx, streamID, events); derr == nil {
			return dup, nil
		}
		return AppendResult{}, &VersionConflictError{StreamID: streamID, Expected: base.Version, Actual: -1}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch pgErr.ConstraintName {
		case "events_event_id_key":
			return s.duplicate(ctx, streamID, events)
		case "run_snapshots_one_open_per_business":
			return AppendResult{}, s.activeRunExists(ctx, events)
		case "events_stream_version_key":
			return AppendResult{}, &VersionConflictError{StreamID: streamID, Expected: base.Version, Actual: -1}
		}
	}
	return AppendResult{}, fmt.Errorf("append to run %s: %w", streamID, err)
}

// The two forms of the append statement (see appendSQL).
var (
	appendExisting = appendSQL(false)
	appendNew      = appendSQL(true)
)

// appendSQL is one statement, so one round trip and atomic without an
// explicit transaction: it moves the snapshot from the expected version
// (UPDATE ... WHERE version = expected; for a new stream an INSERT that does
// nothing if the run exists) and inserts the events only if that matched. A
// concurrent append blocks on the snapshot row, then finds the version moved
// and inserts nothing. The partial unique index on open snapshots refuses a
// second open run of a business.
func appendSQL(newStream bool) string {
	snapshot := `UPDATE run_snapshots SET version = $2, ended = $3, last_heartbeat_at = $4, state = $5
		WHERE run_id = $1 AND version = $14 AND NOT ended RETURNING 1`
	if newStream {
		snapshot = `INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, state)
		SELECT $1, $6, $2, $3, $4, $5 WHERE $14::bigint = 0 ON CONFLICT (run_id) DO NOTHING RETURNING 1`
	}
	return `WITH s AS (` + snapshot + `), e AS (
		INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at)
		SELECT u.id, $1, u.v, $6, u.t, u.sv, u.d, u.m, u.o
		FROM s, unnest($7::uuid[], $8::bigint[], $9::text[], $10::int[], $11::jsonb[], $12::jsonb[], $13::timestamptz[])
			WITH ORDINALITY AS u(id, v, t, sv, d, m, o, n)
		ORDER BY u.n
		RETURNING position)
	SELECT max(position) FROM e`
}

// appendColumns are the events of an append as parallel arrays.
type appendColumns struct {
	ids      []uuid.UUID
	versions []int64
	types    []string
	schemas  []int32
	data     [][]byte
	meta     [][]byte
	occurred []time.Time
	state    []byte
}

// encodeAppend folds events onto base and encodes them and the new snapshot.
func encodeAppend(base domain.Run, events []NewEvent) (domain.Run, appendColumns, error) {
	var c appendColumns
	next := base
	for _, ne := range events {
		next = domain.Evolve(next, ne.Event)
		typ, ver, data, err := domain.MarshalEvent(ne.Event)
		if err != nil {
			return next, c, err
		}
		meta, err := json.Marshal(ne.Metadata)
		if err != nil {
			return next, c, err
		}
		id := ne.ID
		if id == uuid.Nil {
			id = uuid.Must(uuid.NewV7())
		}
		c.ids = append(c.ids, id)
		c.versions = append(c.versions, next.Version)
		c.types = append(c.types, typ)
		c.schemas = append(c.schemas, int32(ver))
		c.data = append(c.data, data)
		c.meta = append(c.meta, meta)
		c.occurred = append(c.occurred, ne.Event.When())
	}
	state, err := json.Marshal(next)
	c.state = state
	return next, c, err
}

func scanRun(row pgx.Row) (domain.Run, error) {
	var raw []byte
	if err := row.Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return domain.Run{}, nil
		}
		return domain.Run{}, err
	}
	var r domain.Run
	if err := json.Unmarshal(raw, &r); err != nil {
		return domain.Run{}, fmt.Errorf("decode run snapshot: %w", err)
	}
	return r, nil
}

// duplicate answers a retried append whose first event is already stored.
func (s *Store) duplicate(ctx context.Context, streamID uuid.UUID, events []NewEvent) (AppendResult, error) {
	var (
		stored  uuid.UUID
		lastPos int64
		count   int
	)
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	err := s.pool.QueryRow(ctx, `SELECT count(*), coalesce(max(position), 0), coalesce(min(stream_id::text), '00000000-0000-0000-0000-000000000000')::uuid
		FROM events WHERE event_id = ANY($1)`, ids).Scan(&count, &lastPos, &stored)
	if err != nil {
		return AppendResult{}, fmt.Errorf("append to run %s: check retry: %w", streamID, err)
	}
	if count != len(events) || stored != streamID {
		return AppendResult{}, &VersionConflictError{StreamID: streamID, Expected: -1, Actual: -1}
	}
	run, err := s.Load(ctx, streamID)
	if err != nil {
		return AppendResult{}, err
	}
	return AppendResult{Run: run, LastPosition: lastPos, Duplicate: true}, nil
}

func (s *Store) activeRunExists(ctx context.Context, events []NewEvent) error {
	start, ok := events[0].Event.(domain.RunStarted)
	if !ok {
		return &domain.ActiveRunExistsError{}
	}
	open, err := s.OpenRun(ctx, start.BusinessID)
	if err != nil {
		return err
	}
	return &domain.ActiveRunExistsError{RunID: open.ID}
}

// Load returns the current state of a run from its snapshot; a run that does
// not exist is the zero Run (Version 0).
func (s *Store) Load(ctx context.Context, runID uuid.UUID) (domain.Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT state FROM run_snapshots WHERE run_id = $1`, runID))
	if err != nil {
		return domain.Run{}, fmt.Errorf("load run %s: %w", runID, err)
	}
	return r, nil
}

// LoadRuns returns the current state of the given runs from their snapshots
// (runs that do not exist are left out), in one query.
func (s *Store) LoadRuns(ctx context.Context, ids []uuid.UUID) ([]domain.Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT state FROM run_snapshots WHERE run_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("load %d runs: %w", len(ids), err)
	}
	return collectRuns(rows)
}

// OpenRun returns the business's run that has not ended, or the zero Run.
func (s *Store) OpenRun(ctx context.Context, businessID string) (domain.Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT state FROM run_snapshots WHERE business_id = $1 AND NOT ended`, businessID))
	if err != nil {
		return domain.Run{}, fmt.Errorf("open run of %s: %w", businessID, err)
	}
	return r, nil
}

// SilentRuns returns up to limit runs that have not ended and whose last sign
// of life is at or before cutoff, oldest first. Its cost follows the number
// of open runs (a partial index), not the size of the log.
func (s *Store) SilentRuns(ctx context.Context, cutoff time.Time, limit int) ([]domain.Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT state FROM run_snapshots WHERE NOT ended AND last_heartbeat_at <= $1
		ORDER BY last_heartbeat_at LIMIT $2`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("silent runs: %w", err)
	}
	return collectRuns(rows)
}

// OldestOpenHeartbeat returns the last sign of life of the open run that has
// been silent longest, and false when no run is open.
func (s *Store) OldestOpenHeartbeat(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(last_heartbeat_at) FROM run_snapshots WHERE NOT ended`).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("oldest open run: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}

func collectRuns(rows pgx.Rows) ([]domain.Run, error) {
	defer rows.Close()
	var out []domain.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
