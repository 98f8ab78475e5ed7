package projections

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// The projections, by name (also their consumer groups).
const (
	Runs       = "runs"
	ActiveRuns = "active_runs"
)

// Names lists every projection.
var Names = []string{Runs, ActiveRuns}

// projection is one read model: how a single event changes its table (the
// live path), and which rows a whole folded log gives it (the rebuild path).
// Both go through domain.Evolve, so they cannot disagree on a run's state.
// Rows are read without FOR UPDATE: the consumer group's lock on its offset
// row already makes the live projector the table's only writer.
type projection struct {
	name  string
	apply func(ctx context.Context, tx pgx.Tx, table string, rec eventstore.Recorded, live *pendingWrites) error
	rows  func(runs []RunRow) []RunRow
}

func byName(name string) (projection, error) {
	switch name {
	case Runs:
		return projection{name: Runs, apply: applyRuns, rows: func(r []RunRow) []RunRow { return r }}, nil
	case ActiveRuns:
		return projection{name: ActiveRuns, apply: applyActiveRuns, rows: openRuns}, nil
	}
	return projection{}, fmt.Errorf("unknown projection %q (want one of %s)", name, strings.Join(Names, ", "))
}

// GapError means an event arrived whose predecessor in the stream was not applied.
type GapError struct {
	Event   eventstore.Recorded
	Applied int64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("run %s: event version %d after applied version %d", e.Event.StreamID, e.Event.Version, e.Applied)
}

// applyRuns applies one event to the runs table. On the live path (live not
// nil) an event that follows the cached row is only deferred; anything else
// flushes what is deferred, then reads, decides and writes.
func applyRuns(ctx context.Context, tx pgx.Tx, table string, rec eventstore.Recorded, live *pendingWrites) error {
	key := rec.StreamID.String()
	cache := live.rowCache()
	if cur, ok := cache.get(key); ok && cur.Version+1 == rec.Version {
		next := RunRow{Run: domain.Evolve(cur.Run, rec.Event), LastPosition: rec.Position}
		live.add(key, cur, next)
		cache.put(key, next)
		return nil
	}
	if err := live.flush(ctx, tx); err != nil {
		return err
	}
	cur, ok, err := queryRunRow(ctx, tx, `SELECT `+runColumnList+` FROM `+table+` WHERE run_id = $1`, rec.StreamID)
	if err != nil {
		return err
	}
	if ok && cur.Version >= rec.Version {
		cache.put(key, cur)
		return nil // a redelivery: already applied
	}
	if cur.Version+1 != rec.Version {
		return &GapError{Event: rec, Applied: cur.Version}
	}
	next := RunRow{Run: domain.Evolve(cur.Run, rec.Event), LastPosition: rec.Position}
	_, err = tx.Exec(ctx, upsertSQL(table, "run_id"), next.values()...)
	cache.settle(key, next, err == nil, err)
	return err
}

// applyActiveRuns applies one event to active_runs, deferring like applyRuns.
func applyActiveRuns(ctx context.Context, tx pgx.Tx, table string, rec eventstore.Recorded, live *pendingWrites) error {
	key := rec.BusinessID
	cache := live.rowCache()
	if cur, ok := cache.get(key); ok && cur.ID == rec.StreamID && cur.Version+1 == rec.Version {
		next := RunRow{Run: domain.Evolve(cur.Run, rec.Event), LastPosition: rec.Position}
		live.add(key, cur, next)
		cache.settle(key, next, true, nil)
		return nil
	}
	if err := live.flush(ctx, tx); err != nil {
		return err
	}
	cur, ok, err := queryRunRow(ctx, tx, `SELECT `+runColumnList+` FROM `+table+` WHERE business_id = $1`, rec.BusinessID)
	if err != nil {
		return err
	}
	var base domain.Run
	switch {
	case ok && cur.ID == rec.StreamID:
		if cur.Version >= rec.Version {
			cache.put(key, cur)
			return nil // a redelivery
		}
		if cur.Version+1 != rec.Version {
			return &GapError{Event: rec, Applied: cur.Version}
		}
		base = cur.Run
	case rec.Version == 1:
		start := domain.Evolve(domain.Run{}, rec.Event)
		if ok && !newer(start, cur.Run) {
			return nil
		}
	default:
		return nil // a run that is not (or no longer) the business's open run
	}
	next := RunRow{Run: domain.Evolve(base, rec.Event), LastPosition: rec.Position}
	if next.Ended() {
		_, err = tx.Exec(ctx, `DELETE FROM `+table+` WHERE business_id = $1 AND run_id = $2`, next.BusinessID, next.ID)
	} else {
		_, err = tx.Exec(ctx, upsertSQL(table, "business_id"), next.values()...)
	}
	cache.settle(key, next, err == nil, err)
	return err
}

// newer orders runs of one business by start; the write side allows one open
// run at a time, so this only decides between a run and its ended predecessor
// when their events are applied out of commit order.
func newer(a, b domain.Run) bool {
	if !a.StartedAt.Equal(b.StartedAt) {
		return a.StartedAt.After(b.StartedAt)
	}
	return a.ID.String() > b.ID.String()
}

// openRuns is the active_runs content for a set of folded runs: per business,
// its newest run that has not ended.
func openRuns(runs []RunRow) []RunRow {
	byBusiness := map[string]RunRow{}
	for _, r := range runs {
		if r.Ended() {
			continue
		}
		if cur, ok := byBusiness[r.BusinessID]; !ok || newer(r.Run, cur.Run) {
			byBusiness[r.BusinessID] = r
		}
	}
	out := make([]RunRow, 0, len(byBusiness))
	for _, r := range byBusiness {
		out = append(out, r)
	}
	return out
}

func upsertSQL(table, key string) string {
	var set, params strings.Builder
	for i, c := range runColumns {
		if i > 0 {
			params.WriteString(", ")
		}
		fmt.Fprintf(&params, "$%d", i+1)
		if c == key {
			continue
		}
		if set.Len() > 0 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "%s = excluded.%s", c, c)
	}
	return `INSERT INTO ` + table + ` (` + runColumnList + `) VALUES (` + params.String() + `)
		ON CONFLICT (` + key + `) DO UPDATE SET ` + set.String()
}
