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

// planCompaction reads each candidate's events (ended runs do not change, so
// this happens before any transaction that writes) and applies the rule. A
// run no consumer group has folded past yet is skipped.
func (s *Store) planCompaction(ctx context.Context, cands []compactCandidate, policy domain.Policy) ([]compactPlan, int, error) {
	var plans []compactPlan
	skipped := 0
	for _, c := range cands {
		rows, err := s.pool.Query(ctx, `SELECT NOT EXISTS (SELECT 1 FROM projection_offsets o
				WHERE (o.last_processed_transaction_id, o.offset_acked) < (e.transaction_id, e.position)),
			`+RecordedColumns+` FROM events e WHERE e.business_id = $1 AND e.stream_id = $2 ORDER BY e.stream_version`,
			c.business, c.id)
		if err != nil {
			return nil, 0, fmt.Errorf("compact: read run %s: %w", c.id, err)
		}
		var (
			recs    []Recorded
			applied = true
		)
		for rows.Next() {
			var ok bool
			r, err := ScanRecordedWith(rows, &ok)
			if err != nil {
				rows.Close()
				return nil, 0, fmt.Errorf("compact: read run %s: %w", c.id, err)
			}
			applied = applied && ok
			recs = append(recs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		if !applied {
			skipped++
			continue
		}
		events := make([]domain.Event, len(recs))
		for i, r := range recs {
			events[i] = r.Event
		}
		pl := compactPlan{run: c, remove: []int64{}}
		for i, keep := range policy.Compact(events) {
			if recs[i].Type != domain.TypeHeartbeat {
				continue
			}
			pl.heartbeats++
			if !keep {
				pl.remove = append(pl.remove, recs[i].Position)
			}
		}
		plans = append(plans, pl)
	}
	return plans, skipped, nil
}

// applyCompaction deletes one batch's heartbeats and records them, in one
// short transaction that waits on nothing outside the database.
func (s *Store) applyCompaction(ctx context.Context, id int64, plans []compactPlan, hook func(string)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, pl := range plans {
			if _, err := tx.Exec(ctx, `SELECT lifecycle_compact_run($1, $2, $3, $4, $5)`,
				id, pl.run.business, pl.run.id, pl.remove, pl.heartbeats); err != nil {
				return fmt.Errorf("compact run %s of %s: %w", pl.run.id, pl.run.business, err)
			}
		}
		hook("batch-deleted")
		return nil
	})
}
