package projections

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Difference is one row where a live read model and the rebuild disagree.
type Difference struct {
	Projection string  `json:"projection"`
	Key        string  `json:"key"`
	Live       *RunRow `json:"live"`
	Rebuilt    *RunRow `json:"rebuilt"`
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s:\n  live:    %s\n  rebuilt: %s", d.Projection, d.Key, describe(d.Live), describe(d.Rebuilt))
}

func describe(r *RunRow) string {
	if r == nil {
		return "(no row)"
	}
	return fmt.Sprintf("%+v", *r)
}

// Verify rebuilds every projection from the log and compares it with the
// live table. Both are read in one snapshot, and the rebuild folds exactly
// the events the projection's consumer group has committed, so a live table
// that is merely behind is not reported; only wrong rows are.
func Verify(ctx context.Context, pool *pgxpool.Pool) ([]Difference, error) {
	var diffs []Difference
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, name := range Names {
			proj, _ := byName(name)
			d, err := verifyOne(ctx, tx, proj)
			if err != nil {
				return fmt.Errorf("verify %s: %w", name, err)
			}
			diffs = append(diffs, d...)
		}
		return nil
	})
	return diffs, err
}

func verifyOne(ctx context.Context, tx pgx.Tx, proj projection) ([]Difference, error) {
	at, err := readOffset(ctx, tx, proj.name)
	if err != nil {
		return nil, err
	}
	f, err := foldLog(ctx, tx, &at, nil)
	if err != nil {
		return nil, err
	}
	want := keyed(proj.name, proj.rows(f.rows()))
	rows, err := tx.Query(ctx, `SELECT `+runColumnList+` FROM `+proj.name)
	if err != nil {
		return nil, err
	}
	liveRows, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunRow, error) { return scanRunRow(row) })
	if err != nil {
		return nil, err
	}
	got := keyed(proj.name, liveRows)
	var diffs []Difference
	for k, g := range got {
		w, ok := want[k]
		if !ok || !sameRow(g, w) {
			d := Difference{Projection: proj.name, Key: k, Live: &g}
			if ok {
				d.Rebuilt = &w
			}
			diffs = append(diffs, d)
		}
	}
	for k, w := range want {
		if _, ok := got[k]; !ok {
			diffs = append(diffs, Difference{Projection: proj.name, Key: k, Rebuilt: &w})
		}
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Key < diffs[j].Key })
	return diffs, nil
}

func keyed(projection string, rows []RunRow) map[string]RunRow {
	m := make(map[string]RunRow, len(rows))
	for _, r := range rows {
		k := r.ID.String()
		if projection == ActiveRuns {
			k = r.BusinessID
		}
		m[k] = r
	}
	return m
}

// sameRow compares what the table stores (the columns), at the database's
// microsecond time precision.
func sameRow(a, b RunRow) bool {
	va, vb := a.values(), b.values()
	for i := range va {
		if fmt.Sprint(normal(va[i])) != fmt.Sprint(normal(vb[i])) {
			return false
		}
	}
	return true
}

func normal(v any) any {
	switch t := v.(type) {
	case interface{ UnixMicro() int64 }:
		return strconv.FormatInt(t.UnixMicro(), 10)
	case uuid.UUID:
		return t.String()
	}
	return v
}
