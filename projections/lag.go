package projections

import (
	"context"
	"fmt"
)

// Lag is how far a projection is behind the log.
type Lag struct {
	Projection string  `json:"projection"`
	Events     int64   `json:"events_behind"`
	Seconds    float64 `json:"seconds_behind"`
}

// Lags measures each projection: the committed events past its offset, and
// the age of the oldest of them (0 when caught up).
func Lags(ctx context.Context, q Querier, names []string) ([]Lag, error) {
	if len(names) == 0 {
		names = Names
	}
	out := make([]Lag, 0, len(names))
	for _, name := range names {
		l := Lag{Projection: name}
		err := q.QueryRow(ctx, `
			WITH o AS (
				SELECT last_processed_transaction_id AS tx, coalesce(offset_acked, 0) AS pos
				FROM projection_offsets WHERE consumer_group = $1
				UNION ALL SELECT '0'::xid8, 0
				ORDER BY tx DESC LIMIT 1)
			SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(e.recorded_at)), 0)::float8
			FROM events e, o WHERE (e.transaction_id, e.position) > (o.tx, o.pos)`, name).Scan(&l.Events, &l.Seconds)
		if err != nil {
			return nil, fmt.Errorf("lag of %s: %w", name, err)
		}
		out = append(out, l)
	}
	return out, nil
}
