package projections

import (
	"context"
	"fmt"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
)

// ReadOffsets reads every consumer group's committed offset from
// watermill-sql's offsets table: the feed's resync (feed.OffsetReader).
func ReadOffsets(ctx context.Context, q feed.Querier) (map[string]eventstore.Offset, error) {
	rows, err := q.Query(ctx, `SELECT consumer_group, last_processed_transaction_id::text::bigint, coalesce(offset_acked, 0)
		FROM projection_offsets`)
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	defer rows.Close()
	offsets := map[string]eventstore.Offset{}
	for rows.Next() {
		var (
			group string
			tx    int64
			off   eventstore.Offset
		)
		if err := rows.Scan(&group, &tx, &off.Position); err != nil {
			return nil, err
		}
		off.TxID = uint64(tx)
		offsets[group] = off
	}
	return offsets, rows.Err()
}
