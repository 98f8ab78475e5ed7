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

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/pguuid"
)

// appendReq is one command's append: its stream, the version it expects,
// the snapshot it moves to, and its events, encoded.
type appendReq struct {
	streamID uuid.UUID
	base     domain.Run
	next     domain.Run
	staleAt  time.Time
	state    []byte
	events   []NewEvent
	ids      []uuid.UUID
	versions []int64
	types    []string
	schemas  []int32
	data     [][]byte
	meta     [][]byte
	occurred []time.Time
}

// newAppend folds events onto base and encodes the snapshot and the events.
func (s *Store) newAppend(streamID uuid.UUID, base domain.Run, events []NewEvent) (*appendReq, error) {
	r := &appendReq{streamID: streamID, base: base, next: base, events: events}
	for _, ne := range events {
		r.next = domain.Evolve(r.next, ne.Event)
		typ, ver, data, err := domain.MarshalEvent(ne.Event)
		if err != nil {
			return nil, err
		}
		meta, err := json.Marshal(ne.Metadata)
		if err != nil {
			return nil, err
		}
		id := ne.ID
		if id == uuid.Nil {
			id = uuid.Must(uuid.NewV7())
		}
		r.ids = append(r.ids, id)
		r.versions = append(r.versions, r.next.Version)
		r.types = append(r.types, typ)
		r.schemas = append(r.schemas, int32(ver))
		r.data = append(r.data, data)
		r.meta = append(r.meta, meta)
		r.occurred = append(r.occurred, ne.Event.When())
	}
	r.staleAt = r.next.StaleAt(s.opts.DefaultTTL)
	state, err := encodeRun(r.next)
	r.state = state
	return r, err
}

// appendSQL appends the events of several commands in one statement: for
// each command it moves the run's snapshot from the expected version
// (UPDATE … WHERE version = expected AND NOT ended; for a new run an INSERT)
// and inserts its events only if that matched. A concurrent append of the
// same run blocks on the snapshot row, then finds the version moved and
// inserts nothing. Positions are drawn first, so each snapshot records its
// run's last position. It returns (run_id, last position) per command that
// applied.
//
// With strict=false, a new run that conflicts with an existing run or with
// the one-open-run-per-business index is skipped (ON CONFLICT DO NOTHING),
// so it cannot fail the other commands; its caller learns why by appending
// alone (strict=true), which raises the violation by name.
//
// With notify, the statement also sends the highest position it wrote on
// the LISTEN/NOTIFY channel $17 (delivered at commit), once per statement:
// the other replicas' projectors wake for it. The notification is a
// materialized CTE, so it runs once whatever the plan; a statement that wrote
// nothing sends nothing (it is filtered on a position having been written,
// which a generic plan would otherwise send as an empty payload).
func appendSQL(strict, notify bool) string {
	onConflict := ` ON CONFLICT DO NOTHING`
	if strict {
		onConflict = ``
	}
	final := `SELECT stream_id, max(position) FROM written GROUP BY stream_id`
	if notify {
		final = `, notified AS MATERIALIZED (
		SELECT pg_notify($17, top::text) FROM (SELECT max(position) AS top FROM written) m WHERE top IS NOT NULL
	)
	SELECT w.stream_id, max(w.position) FROM written w, notified GROUP BY w.stream_id`
	}
	return `WITH input AS MATERIALIZED (
		SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bool[], $5::timestamptz[], $6::timestamptz[], $7::bytea[], $8::text[])
			AS i(run_id, expected, next_version, ended, last_heartbeat_at, stale_at, state, business_id)
	), ev AS MATERIALIZED (
		SELECT e.*, nextval(pg_get_serial_sequence('events', 'position')) AS pos
		FROM unnest($9::uuid[], $10::uuid[], $11::bigint[], $12::text[], $13::int[], $14::jsonb[], $15::jsonb[], $16::timestamptz[])
			WITH ORDINALITY AS e(run_id, id, v, t, sv, d, m, o, n)
		ORDER BY e.n
	), last AS (
		SELECT run_id, max(pos) AS pos FROM ev GROUP BY run_id
	), moved AS (
		UPDATE run_snapshots rs SET version = i.next_version, ended = i.ended, last_heartbeat_at = i.last_heartbeat_at,
			stale_at = i.stale_at, state = i.state, last_position = last.pos
		FROM input i JOIN last USING (run_id)
		WHERE rs.run_id = i.run_id AND i.expected > 0 AND rs.version = i.expected AND NOT rs.ended
		RETURNING rs.run_id
	), created AS (
		INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, stale_at, state, last_position)
		SELECT i.run_id, i.business_id, i.next_version, i.ended, i.last_heartbeat_at, i.stale_at, i.state, last.pos
		FROM input i JOIN last USING (run_id) WHERE i.expected = 0` + onConflict + `
		RETURNING run_id
	), ok AS (
		SELECT run_id FROM moved UNION ALL SELECT run_id FROM created
	), written AS (
		INSERT INTO events (position, event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at)
		SELECT ev.pos, ev.id, ev.run_id, ev.v, i.business_id, ev.t, ev.sv, ev.d, ev.m, ev.o
		FROM ev JOIN ok USING (run_id) JOIN input i USING (run_id)
		ORDER BY ev.pos
		RETURNING stream_id, position
	)
	` + final
}

// appendStatements are the forms of the append statement, by [strict][notify].
var appendStatements = [2][2]string{
	{appendSQL(false, false), appendSQL(false, true)},
	{appendSQL(true, false), appendSQL(true, true)},
}

// appendStatement returns the statement to run and its extra arguments.
func (s *Store) appendStatement(strict bool) (string, []any) {
	notify := s.opts.NotifyChannel != ""
	sql := appendStatements[b2i(strict)][b2i(notify)]
	if notify {
		return sql, []any{s.opts.NotifyChannel}
	}
	return sql, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendArgs are the statement's arguments for reqs.
func appendArgs(reqs []*appendReq) []any {
	var (
		runIDs, evRuns, evIDs          []uuid.UUID
		expected, next, evVersions     []int64
		ended                          []bool
		heartbeats, staleAts, occurred []time.Time
		states, evData, evMeta         [][]byte
		businesses, evTypes            []string
		evSchemas                      []int32
	)
	for _, r := range reqs {
		runIDs = append(runIDs, r.streamID)
		expected = append(expected, r.base.Version)
		next = append(next, r.next.Version)
		ended = append(ended, r.next.Ended())
		heartbeats = append(heartbeats, r.next.LastHeartbeatAt)
		staleAts = append(staleAts, r.staleAt)
		states = append(states, r.state)
		businesses = append(businesses, r.next.BusinessID)
		for i := range r.ids {
			evRuns = append(evRuns, r.streamID)
			evIDs = append(evIDs, r.ids[i])
			evVersions = append(evVersions, r.versions[i])
			evTypes = append(evTypes, r.types[i])
			evSchemas = append(evSchemas, r.schemas[i])
			evData = append(evData, r.data[i])
			evMeta = append(evMeta, r.meta[i])
			occurred = append(occurred, r.occurred[i])
		}
	}
	return []any{pguuid.Raw(runIDs), expected, next, ended, heartbeats, staleAts, states, businesses,
		pguuid.Raw(evRuns), pguuid.Raw(evIDs), evVersions, evTypes, evSchemas, evData, evMeta, occurred}
}

// execAppend runs the append statement for reqs and returns, per applied
// run, the position of its last event.
func (s *Store) execAppend(ctx context.Context, strict bool, reqs []*appendReq) (map[uuid.UUID]int64, error) {
	sql, extra := s.appendStatement(strict)
	rows, err := s.pool.Query(ctx, sql, append(appendArgs(reqs), extra...)...)
	if err != nil {
		return nil, err
	}
	applied := make(map[uuid.UUID]int64, len(reqs))
	var (
		id  uuid.UUID
		pos int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &pos}, func() error {
		applied[id] = pos
		return nil
	})
	return applied, err
}

// appendAlone appends one command by itself, after its batch did not apply
// it (or failed), and returns its own precise answer: the result, a
// duplicate retry, a version conflict, an ended run or an open run in the way.
func (s *Store) appendAlone(ctx context.Context, req *appendReq, batchErr error) (AppendResult, error) {
	if batchErr == nil && req.base.Version > 0 {
		// The batch ran and the snapshot did not match: another append won,
		// or the run ended, or these very events are already stored.
		return s.duplicateOrConflict(ctx, req)
	}
	applied, err := s.execAppend(ctx, true, []*appendReq{req})
	if err == nil {
		if pos, ok := applied[req.streamID]; ok {
			s.committed(pos)
			return AppendResult{Run: req.next, LastPosition: pos}, nil
		}
		return s.duplicateOrConflict(ctx, req)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch pgErr.ConstraintName {
		case "events_event_id_key", "run_snapshots_pkey":
			return s.duplicateOrConflict(ctx, req)
		case "run_snapshots_one_open_per_business":
			return AppendResult{}, s.activeRunExists(ctx, req.events)
		case "events_stream_version_key":
			return AppendResult{}, &VersionConflictError{StreamID: req.streamID, Expected: req.base.Version, Actual: -1}
		}
	}
	return AppendResult{}, fmt.Errorf("append to run %s: %w", req.streamID, err)
}

// duplicateOrConflict answers an append that the log refused: the stored
// result if its events are already there (a retry), a version conflict if
// they are not, and the database's error if it could not tell.
func (s *Store) duplicateOrConflict(ctx context.Context, req *appendReq) (AppendResult, error) {
	dup, err := s.duplicate(ctx, req.streamID, req.events)
	if errors.Is(err, ErrVersionConflict) {
		return AppendResult{}, &VersionConflictError{StreamID: req.streamID, Expected: req.base.Version, Actual: -1}
	}
	return dup, err
}

func (s *Store) committed(lastPosition int64) {
	if s.opts.OnCommitted != nil {
		s.opts.OnCommitted(lastPosition)
	}
}
