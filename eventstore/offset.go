package eventstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Offset is a place in subscriber order: (transaction_id, position), the
// order in which consumer groups apply the log. An event is applied by a
// group whose offset is at or past the event's own (transaction, position).
type Offset struct {
	TxID     uint64
	Position int64
}

// Before reports whether o comes before p in subscriber order.
func (o Offset) Before(p Offset) bool {
	return o.TxID < p.TxID || (o.TxID == p.TxID && o.Position < p.Position)
}

// RowQuerier is what BusinessesMoved reads through: a pool, a connection
// or a transaction.
type RowQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// BusinessesMoved names the businesses with events after from and up to to
// in subscriber order, with the highest position of each; past scan events
// it reads no further and reports all (too many to say which).
func BusinessesMoved(ctx context.Context, q RowQuerier, from, to Offset, scan int) (moved map[string]int64, all bool, err error) {
	rows, err := q.Query(ctx, `SELECT business_id, max(position), sum(count(*)) OVER () FROM (
			SELECT business_id, position FROM events
			WHERE (transaction_id, position) > ($1::text::xid8, $2) AND (transaction_id, position) <= ($3::text::xid8, $4)
			ORDER BY transaction_id, position LIMIT $5) e
		GROUP BY business_id`,
		strconv.FormatUint(from.TxID, 10), from.Position, strconv.FormatUint(to.TxID, 10), to.Position, scan+1)
	if err != nil {
		return nil, false, fmt.Errorf("read moved businesses: %w", err)
	}
	defer rows.Close()
	moved = map[string]int64{}
	for rows.Next() {
		var (
			b       string
			pos, of int64
		)
		if err := rows.Scan(&b, &pos, &of); err != nil {
			return nil, false, err
		}
		if of > int64(scan) {
			return nil, true, nil
		}
		moved[b] = pos
	}
	return moved, false, rows.Err()
}
