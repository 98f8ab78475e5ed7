package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// LifecycleRecord is a compaction of one of a business's runs, or the
// erasure of the business: what the audit lists beside the timeline.
type LifecycleRecord struct {
	// Kind is "compaction" or "erasure".
	Kind  string    `json:"kind"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	// RunID, HeartbeatsBefore, HeartbeatsRemoved, BytesRemoved and
	// EndedBefore describe a compaction of the run.
	RunID             uuid.UUID `json:"run_id,omitzero"`
	HeartbeatsBefore  int       `json:"heartbeats_before,omitempty"`
	HeartbeatsRemoved int       `json:"heartbeats_removed,omitempty"`
	BytesRemoved      int64     `json:"bytes_removed,omitempty"`
	EndedBefore       time.Time `json:"ended_before,omitzero"`
	// Reason and Counts (rows removed by table) describe an erasure.
	Reason string           `json:"reason,omitempty"`
	Counts map[string]int64 `json:"counts,omitempty"`
}

// LifecycleRecords returns the compactions of the business's runs and its
// erasures, oldest first (erasures outlive the business: they are how the
// audit of an erased business says what became of it).
func (s *Store) LifecycleRecords(ctx context.Context, businessID string, runID uuid.UUID) ([]LifecycleRecord, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT 'compaction', r.compacted_at, c.actor, r.run_id, r.heartbeats_before, r.heartbeats_removed, r.bytes_removed,
			c.ended_before, '', '{}'::jsonb
		FROM compacted_runs r JOIN compactions c ON c.id = r.compaction_id
		WHERE r.business_id = $1 AND ($2 = '00000000-0000-0000-0000-000000000000'::uuid OR r.run_id = $2)
		UNION ALL
		SELECT 'erasure', erased_at, actor, NULL, 0, 0, 0, NULL, reason, counts
		FROM erasures WHERE business_id = $1
		ORDER BY 2`, businessID, runID)
	if err != nil {
		return nil, fmt.Errorf("lifecycle records of %s: %w", businessID, err)
	}
	defer rows.Close()
	var out []LifecycleRecord
	for rows.Next() {
		var (
			r     LifecycleRecord
			run   *uuid.UUID
			ended *time.Time
		)
		if err := rows.Scan(&r.Kind, &r.At, &r.Actor, &run, &r.HeartbeatsBefore, &r.HeartbeatsRemoved, &r.BytesRemoved,
			&ended, &r.Reason, &r.Counts); err != nil {
			return nil, err
		}
		if run != nil {
			r.RunID = *run
		}
		if ended != nil {
			r.EndedBefore = ended.UTC()
		}
		r.At = r.At.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}
