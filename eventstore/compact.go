package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
)

// CompactParams says what a compaction removes and who runs it.
type CompactParams struct {
	// EndedBefore: only runs that ended before it are compacted.
	EndedBefore time.Time
	// Actor is who runs it ("operator:alice", "serve"), for the record.
	Actor string
	// BatchRuns is the number of runs compacted per transaction (default 50).
	BatchRuns int
	// Policy judges runs that recorded no policy of their own.
	Policy domain.Policy
	// Hook, if set, is called at named points ("batch-planned",
	// "batch-deleted": inside the batch's transaction, before its commit);
	// the crash tests stop the process there.
	Hook func(point string)
}

// CompactResult is what a compaction did.
type CompactResult struct {
	// ID is the compaction's record.
	ID int64
	// Runs is the number of runs compacted; Skipped those left for later
	// because a consumer group has not applied their last event yet.
	Runs, Skipped int
	// HeartbeatsBefore and EventsRemoved count the compacted runs'
	// heartbeats before, and those removed.
	HeartbeatsBefore, EventsRemoved int64
	// BytesRemoved is the size of the removed rows (pg_column_size; the
	// disk is reclaimed by VACUUM, not by the deletion).
	BytesRemoved int64
}

// defaultCompactBatch is the runs per transaction when CompactParams says none.
const defaultCompactBatch = 50

// Compact removes, from runs that ended before p.EndedBefore and were not
// compacted yet, the heartbeats no replay answer needs (domain.Policy.Compact),
// a batch of runs per short transaction, through the database function that
// alone may delete from the log. Open runs are never read for it, kept
// events keep their positions, and every batch adds to the compaction's
// record in its own transaction: a compaction stopped at any point leaves
// each run either whole or compacted, and running it again finishes it. A
// run whose last event some consumer group has not applied yet is skipped
// (counted in Skipped): a projector must never meet a stream with holes it
// has not folded past.
func (s *Store) Compact(ctx context.Context, p CompactParams) (CompactResult, error) {
	if p.EndedBefore.IsZero() {
		return CompactResult{}, errors.New("compact: no cutoff")
	}
	if p.BatchRuns <= 0 {
		p.BatchRuns = defaultCompactBatch
	}
	if p.Actor == "" {
		p.Actor = "unknown"
	}
	hook := func(point string) {
		if p.Hook != nil {
			p.Hook(point)
		}
	}
	var res CompactResult
	if err := s.pool.QueryRow(ctx, `INSERT INTO compactions (actor, ended_before) VALUES ($1, $2) RETURNING id`,
		p.Actor, p.EndedBefore).Scan(&res.ID); err != nil {
		return res, fmt.Errorf("compact: record: %w", err)
	}
	after := uuid.Nil
	for {
		candidates, err := s.compactCandidates(ctx, p.EndedBefore, after, p.BatchRuns)
		if err != nil {
			return res, err
		}
		if len(candidates) == 0 {
			break
		}
		after = candidates[len(candidates)-1].id
		plans, skipped, err := s.planCompaction(ctx, candidates, p.Policy)
		if err != nil {
			return res, err
		}
		res.Skipped += skipped
		hook("batch-planned")
		if err := s.applyCompaction(ctx, res.ID, plans, hook); err != nil {
			return res, err
		}
		for _, pl := range plans {
			res.Runs++
			res.HeartbeatsBefore += int64(pl.heartbeats)
			res.EventsRemoved += int64(len(pl.remove))
		}
	}
	if _, err := s.pool.Exec(ctx, `UPDATE compactions SET finished_at = now() WHERE id = $1`, res.ID); err != nil {
		return res, fmt.Errorf("compact: finish record: %w", err)
	}
	err := s.pool.QueryRow(ctx, `SELECT bytes_removed FROM compactions WHERE id = $1`, res.ID).Scan(&res.BytesRemoved)
	return res, err
}

type compactCandidate struct {
	id       uuid.UUID
	business string
}

// compactCandidates returns up to limit ended runs after the run id after,
// in run id order, that ended before cutoff and were not compacted. The
// snapshot's last sign of life (never after the end) narrows the scan; the
// end itself is in the state.
func (s *Store) compactCandidates(ctx context.Context, cutoff time.Time, after uuid.UUID, limit int) ([]compactCandidate, error) {
	var out []compactCandidate
	for len(out) == 0 {
		rows, err := s.pool.Query(ctx, `SELECT s.run_id, s.business_id, s.state FROM run_snapshots s
			WHERE s.ended AND s.last_heartbeat_at < $1 AND s.run_id > $2
				AND NOT EXISTS (SELECT 1 FROM compacted_runs c WHERE c.run_id = s.run_id)
			ORDER BY s.run_id LIMIT $3`, cutoff, after, limit)
		if err != nil {
			return nil, fmt.Errorf("compact: candidates: %w", err)
		}
		n := 0
		for rows.Next() {
			var (
				c   compactCandidate
				raw []byte
			)
			if err := rows.Scan(&c.id, &c.business, &raw); err != nil {
				rows.Close()
				return nil, err
			}
			n++
			after = c.id
			r, err := decodeRun(raw)
			if err != nil {
				rows.Close()
				return nil, err
			}
			if r.Ended() && r.EndedAt.Before(cutoff) {
				out = append(out, c)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if n < limit {
			break
		}
	}
	return out, nil
}

// compactPlan is one run's heartbeats to remove.
type compactPlan struct {
	run        compactCandidate
	remove     []int64
	heartbeats int
}

// planCompaction reads the candidates' events in one query (ended runs do
// not change, so this happens before any transaction that writes) and
// applies the rule to each run. A run no consumer group has folded past yet
// is skipped.
func (s *Store) planCompaction(ctx context.Context, cands []compactCandidate, policy domain.Policy) ([]compactPlan, int, error) {
	businesses, ids := make([]string, len(cands)), make([]uuid.UUID, len(cands))
	for i, c := range cands {
		businesses[i], ids[i] = c.business, c.id
	}
	rows, err := s.pool.Query(ctx, `SELECT NOT EXISTS (SELECT 1 FROM projection_offsets o
			WHERE (o.last_processed_transaction_id, o.offset_acked) < (e.transaction_id, e.position)),
		`+RecordedColumns+` FROM events e
		WHERE (e.business_id, e.stream_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[]))
		ORDER BY e.stream_id, e.stream_version`, businesses, ids)
	if err != nil {
		return nil, 0, fmt.Errorf("compact: read runs: %w", err)
	}
	recs := map[uuid.UUID][]Recorded{}
	applied := map[uuid.UUID]bool{}
	for rows.Next() {
		var ok bool
		r, err := ScanRecordedWith(rows, &ok)
		if err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("compact: read runs: %w", err)
		}
		if _, seen := applied[r.StreamID]; !seen {
			applied[r.StreamID] = true
		}
		applied[r.StreamID] = applied[r.StreamID] && ok
		recs[r.StreamID] = append(recs[r.StreamID], r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	var plans []compactPlan
	skipped := 0
	for _, c := range cands {
		if !applied[c.id] {
			skipped++
			continue
		}
		run := recs[c.id]
		events := make([]domain.Event, len(run))
		for i, r := range run {
			events[i] = r.Event
		}
		pl := compactPlan{run: c, remove: []int64{}}
		for i, keep := range policy.Compact(events) {
			if run[i].Type != domain.TypeHeartbeat {
				continue
			}
			pl.heartbeats++
			if !keep {
				pl.remove = append(pl.remove, run[i].Position)
			}
		}
		plans = append(plans, pl)
	}
	return plans, skipped, nil
}

// applyCompaction deletes one batch's heartbeats and records them, in one
// short transaction and one statement that waits on nothing outside the
// database.
func (s *Store) applyCompaction(ctx context.Context, id int64, plans []compactPlan, hook func(string)) error {
	if len(plans) == 0 {
		return nil
	}
	businesses, runs, counts := make([]string, len(plans)), make([]uuid.UUID, len(plans)), make([]int32, len(plans))
	// A run's positions travel as one text array element each ("{1,2,3}"):
	// unnest of a two-dimensional array would need rows of equal length.
	positions := make([]string, len(plans))
	for i, pl := range plans {
		businesses[i], runs[i], counts[i] = pl.run.business, pl.run.id, int32(pl.heartbeats)
		positions[i] = int64Array(pl.remove)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT lifecycle_compact_run($1, p.business, p.run, p.positions::bigint[], p.heartbeats)
			FROM unnest($2::text[], $3::uuid[], $4::text[], $5::int[]) AS p (business, run, positions, heartbeats)`,
			id, businesses, runs, positions, counts); err != nil {
			return fmt.Errorf("compact %d runs (first %s of %s): %w", len(plans), runs[0], businesses[0], err)
		}
		hook("batch-deleted")
		return nil
	})
}

func int64Array(ns []int64) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range ns {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(n, 10))
	}
	b.WriteByte('}')
	return b.String()
}
