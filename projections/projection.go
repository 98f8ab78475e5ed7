package projections

import (
	"fmt"
	"strings"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// The projections, by name (also their consumer groups and their tables).
const (
	Runs       = "runs"
	ActiveRuns = "active_runs"
)

// Names lists every projection.
var Names = []string{Runs, ActiveRuns}

// projection is one read model: which row an event concerns (its key) and
// what the event does to that row. The live projector, the rebuild's
// catch-up and the rebuild's fold all go through domain.Evolve, so they
// cannot disagree on a run's state.
type projection struct {
	name string
	// keyColumn is the table's key: run_id (runs) or business_id (active_runs).
	keyColumn string
	key       func(rec eventstore.Recorded) string
	// next decides what rec does to the row the table holds for its key
	// (found=false: no row). It reads nothing and writes nothing.
	next func(cur RunRow, found bool, rec eventstore.Recorded) (change, error)
	// rows is the table's content for a set of folded runs (the rebuild).
	rows func(runs []RunRow) []RunRow
}

// op is what a change does to its row.
type op int

const (
	keep op = iota // nothing (a redelivery, or an event that is not this table's business)
	put            // insert or replace the row with change.row
	del            // delete the row
)

// change is the effect of one event on one row of a read model.
type change struct {
	op  op
	row RunRow
}

func byName(name string) (projection, error) {
	switch name {
	case Runs:
		return projection{name: Runs, keyColumn: "run_id", key: func(rec eventstore.Recorded) string { return rec.StreamID.String() },
			next: nextRuns, rows: func(r []RunRow) []RunRow { return r }}, nil
	case ActiveRuns:
		return projection{name: ActiveRuns, keyColumn: "business_id", key: func(rec eventstore.Recorded) string { return rec.BusinessID },
			next: nextActiveRuns, rows: openRuns}, nil
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

// follow evolves cur by rec if rec is its next event; a redelivered event
// changes nothing, and a missing predecessor is a GapError.
func follow(cur RunRow, rec eventstore.Recorded) (RunRow, bool, error) {
	if cur.Version >= rec.Version {
		return cur, false, nil
	}
	if cur.Version+1 != rec.Version {
		return cur, false, &GapError{Event: rec, Applied: cur.Version}
	}
	return RunRow{Run: domain.Evolve(cur.Run, rec.Event), LastPosition: rec.Position}, true, nil
}

// nextRuns: every run has its row, updated by each of its events.
func nextRuns(cur RunRow, found bool, rec eventstore.Recorded) (change, error) {
	if !found {
		cur = RunRow{}
	}
	next, moved, err := follow(cur, rec)
	if err != nil || !moved {
		return change{}, err
	}
	return change{op: put, row: next}, nil
}

// nextActiveRuns: a business's row is its newest run that has not ended.
func nextActiveRuns(cur RunRow, found bool, rec eventstore.Recorded) (change, error) {
	switch {
	case found && cur.ID == rec.StreamID:
		next, moved, err := follow(cur, rec)
		if err != nil || !moved {
			return change{}, err
		}
		if next.Ended() {
			return change{op: del, row: next}, nil
		}
		return change{op: put, row: next}, nil
	case rec.Version == 1:
		start := RunRow{Run: domain.Evolve(domain.Run{}, rec.Event), LastPosition: rec.Position}
		if found && !newer(start.Run, cur.Run) {
			return change{}, nil
		}
		return change{op: put, row: start}, nil
	}
	return change{}, nil // a run that is not (or no longer) the business's open run
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
