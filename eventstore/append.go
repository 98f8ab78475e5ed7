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

// appendArgs are the statement's arguments for reqs, in appendParams' order.
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
			s.committed(pos, req.beyondHeartbeats())
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

// committed tells the hooks of Options that a statement wrote up to
// lastPosition; beyondHeartbeats says whether it stored anything but
// heartbeats.
func (s *Store) committed(lastPosition int64, beyondHeartbeats bool) {
	if s.opts.OnCommitted != nil {
		s.opts.OnCommitted(lastPosition)
	}
	if beyondHeartbeats && s.opts.OnCommittedBeyondHeartbeats != nil {
		s.opts.OnCommittedBeyondHeartbeats(lastPosition)
	}
}

// beyondHeartbeats reports whether r carries an event other than a heartbeat.
func (r *appendReq) beyondHeartbeats() bool {
	for _, t := range r.types {
		if t != domain.TypeHeartbeat {
			return true
		}
	}
	return false
}
