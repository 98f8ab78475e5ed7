package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
	// CommandID, when set, names the logical command (an Idempotency-Key
	// claim): its events' ids derive from it, and an attempt that finds
	// them stored answers from them (see command_id.go). Not stored.
	CommandID uuid.UUID `json:"-"`
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
	// LastPosition is the global position of the run's last event.
	LastPosition int64
	// Duplicate is true when the events were already in the log (a retry).
	Duplicate bool
}

// Options configure a Store.
type Options struct {
	// DefaultTTL is the TTL of runs that recorded none (started before runs
	// recorded their policy), for the snapshot's stale_at (default 15m).
	DefaultTTL time.Duration
	// BatchMax bounds the commands appended in one statement (default 64;
	// 1 turns batching off: every append is its own statement, and they run
	// side by side, MaxInFlight notwithstanding).
	BatchMax int
	// MaxInFlight is the number of batch statements that may run at once
	// (default 1: appends that arrive while one is in flight go together in
	// the next; measured best in B1, against 2 and 4).
	MaxInFlight int
	// OnCommitted, if set, is called after each append statement commits,
	// with the highest position it wrote (to wake the projector).
	OnCommitted func(lastPosition int64)
	// OnCommittedBeyondHeartbeats, if set, is called after each append
	// statement that stored an event other than a heartbeat, with the
	// highest position it wrote: the wake-up of a consumer group that skips
	// heartbeats (webhooks), which would otherwise read for nothing after
	// every heartbeat.
	OnCommittedBeyondHeartbeats func(lastPosition int64)
	// BatchSizes, if set, observes the number of commands in each batch.
	BatchSizes func(n int)
	// NotifyChannel, if set, is the LISTEN/NOTIFY channel on which every
	// append statement announces the last position it wrote, so that other
	// replicas' projectors wake for it (one notification per statement).
	NotifyChannel string
}

// Store is the event store on one PostgreSQL database.
type Store struct {
	pool    *pgxpool.Pool
	opts    Options
	batches *batcher
}

// New returns a Store on pool with the default options.
func New(pool *pgxpool.Pool) *Store { return NewWithOptions(pool, Options{}) }

// NewWithOptions returns a Store on pool.
func NewWithOptions(pool *pgxpool.Pool, opts Options) *Store {
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = domain.DefaultStaleAfter
	}
	if opts.BatchMax <= 0 {
		opts.BatchMax = 64
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1
	}
	if opts.BatchMax == 1 {
		opts.MaxInFlight = math.MaxInt // no batching: no reason to queue
	}
	s := &Store{pool: pool, opts: opts}
	s.batches = &batcher{store: s}
	return s
}

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
		dup, err := s.duplicate(ctx, streamID, events)
		if errors.Is(err, ErrVersionConflict) {
			return AppendResult{}, &VersionConflictError{StreamID: streamID, Expected: expectedVersion, Actual: base.Version}
		}
		return dup, err
	}
	return s.AppendTo(ctx, streamID, base, events)
}

// AppendTo appends events to a stream whose current state the caller has
// loaded (base; the zero Run for a new stream): it is Append without the
// load, for callers that decided on base. Same errors as Append.
//
// Appends of different runs that arrive while another append is in flight
// are written together, in one statement, when it returns (group commit);
// each is still conditional on its own stream's version, one's refusal never
// fails another's, and AppendTo succeeds only once its events are committed.
// If ctx ends first it returns ctx's error at once, without cancelling the
// statement it shares: its events may then still commit (a retry with the
// same event ids finds them).
func (s *Store) AppendTo(ctx context.Context, streamID uuid.UUID, base domain.Run, events []NewEvent) (AppendResult, error) {
	if len(events) == 0 {
		return AppendResult{}, errors.New("append: no events")
	}
	if base.Ended() {
		return AppendResult{}, &domain.RunEndedError{Final: base}
	}
	req, err := s.newAppend(streamID, base, events)
	if err != nil {
		return AppendResult{}, err
	}
	out := s.batches.submit(ctx, req)
	if out.gaveUp {
		return AppendResult{}, fmt.Errorf("append to run %s: %w", streamID, out.err)
	}
	if out.err != nil || !out.applied {
		return s.appendAlone(ctx, req, out.err)
	}
	return AppendResult{Run: req.next, LastPosition: out.lastPosition}, nil
}

func scanRun(row pgx.Row) (domain.Run, error) {
	var raw []byte
	if err := row.Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return domain.Run{}, nil
		}
		return domain.Run{}, err
	}
	return decodeRun(raw)
}

// duplicate answers a retried append whose events are already stored. It
// returns *VersionConflictError if they are not (all of them, on this
// stream), and the database's error, wrapped, if it could not look.
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
	snap, err := s.LoadSnapshot(ctx, runID)
	return snap.Run, err
}

// Snapshot is a run's current state and the log position of its last event.
type Snapshot struct {
	Run          domain.Run
	LastPosition int64
}

// LoadSnapshot is Load with the position of the run's last event (0 for a
// run that does not exist).
func (s *Store) LoadSnapshot(ctx context.Context, runID uuid.UUID) (Snapshot, error) {
	var (
		raw []byte
		pos int64
	)
	err := s.pool.QueryRow(ctx, `SELECT state, last_position FROM run_snapshots WHERE run_id = $1`, runID).Scan(&raw, &pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, nil
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("load run %s: %w", runID, err)
	}
	r, err := decodeRun(raw)
	return Snapshot{Run: r, LastPosition: pos}, err
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

// SilentRuns returns up to limit runs that have not ended and are silent
// past their own TTL at now (their snapshot's stale_at), longest silent
// first. Its cost follows the number of open runs, not the size of the log:
// it reads the open snapshots through the partial index of open runs
// (run_snapshots_one_open_per_business) and sorts their stale_at, which no
// index holds so that a heartbeat's snapshot update is HOT (migration 0011).
func (s *Store) SilentRuns(ctx context.Context, now time.Time, limit int) ([]domain.Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT state FROM run_snapshots WHERE NOT ended AND stale_at <= $1
		ORDER BY stale_at LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("silent runs: %w", err)
	}
	return collectRuns(rows)
}

// NextStaleAt returns the earliest instant an open run goes silent past its
// TTL, and false when no run is open. Like SilentRuns, it reads the open
// snapshots only.
func (s *Store) NextStaleAt(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(stale_at) FROM run_snapshots WHERE NOT ended`).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("next stale run: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
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
