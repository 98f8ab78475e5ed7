package projections

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	apply func(ctx context.Context, tx pgx.Tx, table string, rec eventstore.Recorded, cache *rowCache) error
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

func applyRuns(ctx context.Context, tx pgx.Tx, table string, rec eventstore.Recorded, cache *rowCache) error {
	key := rec.StreamID.String()
	if cur, ok := cache.get(key); ok && cur.Version+1 == rec.Version {
		next := RunRow{Run: domain.Evolve(cur.Run, rec.Event), LastPosition: rec.Position}
		done, err := writeIfUnchanged(ctx, tx, table, "run_id", cur, next)
		if err != nil || done {
			cache.settle(key, next, done, err)
			return err
		}
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

func applyActiveRuns(ctx context.Context, tx pgx.Tx, table string, rec eventstore.Recorded, cache *rowCache) error {
	key := rec.BusinessID
	if cur, ok := cache.get(key); ok && cur.ID == rec.StreamID && cur.Version+1 == rec.Version {
		next := RunRow{Run: domain.Evolve(cur.Run, rec.Event), LastPosition: rec.Position}
		done, err := writeIfUnchanged(ctx, tx, table, "business_id", cur, next)
		if err != nil || done {
			cache.settle(key, next, done, err)
			return err
		}
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

// writeIfUnchanged writes next (or, for active_runs, deletes an ended run)
// only if the table still holds cur, and reports whether it did. A cached
// row is a guess; this makes the database the judge.
func writeIfUnchanged(ctx context.Context, tx pgx.Tx, table, key string, cur, next RunRow) (bool, error) {
	var (
		tag pgconn.CommandTag
		err error
	)
	if key == "business_id" && next.Ended() {
		tag, err = tx.Exec(ctx, `DELETE FROM `+table+` WHERE business_id = $1 AND run_id = $2 AND version = $3`,
			cur.BusinessID, cur.ID, cur.Version)
	} else {
		tag, err = tx.Exec(ctx, updateSQL(table, key), append(next.values(), cur.ID, cur.Version)...)
	}
	return err == nil && tag.RowsAffected() == 1, err
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

// updateSQL updates every column of the row found by key, if its run_id and
// version are still the ones given after the columns' values.
func updateSQL(table, key string) string {
	var set strings.Builder
	keyParam := 0
	for i, c := range runColumns {
		if c == key {
			keyParam = i + 1
			continue
		}
		if set.Len() > 0 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "%s = $%d", c, i+1)
	}
	n := len(runColumns)
	return fmt.Sprintf(`UPDATE %s SET %s WHERE %s = $%d AND run_id = $%d AND version = $%d`,
		table, set.String(), key, keyParam, n+1, n+2)
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
