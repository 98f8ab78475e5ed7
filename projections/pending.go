package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pendingWrites are the cache-path writes of one subscriber transaction: the
// last state of each row, and the row it expects to replace. They are
// flushed as one statement per kind just before the subscriber writes its
// offset, so the read model and the offset still commit together, while a
// batch of 100 heartbeats on 30 runs costs one UPDATE instead of 100.
type pendingWrites struct {
	table, key string // the read model and its key column
	cache      *rowCache
	rows       map[string]pendingRow
	order      []string
}

type pendingRow struct {
	expected RunRow // what the table holds now (its run_id and version are checked)
	next     RunRow
}

func newPendingWrites(table string, cache *rowCache) *pendingWrites {
	key := "run_id"
	if table == ActiveRuns {
		key = "business_id"
	}
	return &pendingWrites{table: table, key: key, cache: cache, rows: map[string]pendingRow{}}
}

// add defers writing next over the row the table holds as cur.
func (p *pendingWrites) add(key string, cur, next RunRow) {
	if pr, ok := p.rows[key]; ok {
		pr.next = next
		p.rows[key] = pr
		return
	}
	p.rows[key] = pendingRow{expected: cur, next: next}
	p.order = append(p.order, key)
}

// flush writes the pending rows. If the table did not hold a row a write
// expected (the cache was stale), it returns an error: the batch rolls back,
// the cache is cleared, and the redelivery reads the table.
func (p *pendingWrites) flush(ctx context.Context, tx pgx.Tx) error {
	if p == nil || len(p.order) == 0 {
		return nil
	}
	var updates, deletes []pendingRow
	for _, k := range p.order {
		pr := p.rows[k]
		if p.key == "business_id" && pr.next.Ended() {
			deletes = append(deletes, pr)
		} else {
			updates = append(updates, pr)
		}
	}
	clear(p.rows)
	p.order = p.order[:0]
	n, err := p.update(ctx, tx, updates)
	if err == nil && len(deletes) > 0 {
		var d int64
		d, err = p.delete(ctx, tx, deletes)
		n += d
	}
	if err == nil && n != int64(len(updates)+len(deletes)) {
		err = fmt.Errorf("%s: %d of %d deferred writes found their row: stale cache", p.table, n, len(updates)+len(deletes))
	}
	if err != nil {
		p.cache.reset()
	}
	return err
}

func (p *pendingWrites) update(ctx context.Context, tx pgx.Tx, rows []pendingRow) (int64, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	cols := make([][]any, len(runColumns)+2)
	for _, pr := range rows {
		for i, v := range pr.next.values() {
			cols[i] = append(cols[i], v)
		}
		cols[len(runColumns)] = append(cols[len(runColumns)], pr.expected.ID)
		cols[len(runColumns)+1] = append(cols[len(runColumns)+1], pr.expected.Version)
	}
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = typedArray(i, c)
	}
	tag, err := tx.Exec(ctx, batchUpdateSQL(p.table, p.key), args...)
	return tag.RowsAffected(), err
}

func (p *pendingWrites) delete(ctx context.Context, tx pgx.Tx, rows []pendingRow) (int64, error) {
	var (
		businesses []string
		ids        []uuid.UUID
		versions   []int64
	)
	for _, pr := range rows {
		businesses = append(businesses, pr.expected.BusinessID)
		ids = append(ids, pr.expected.ID)
		versions = append(versions, pr.expected.Version)
	}
	tag, err := tx.Exec(ctx, `DELETE FROM `+p.table+` AS t USING unnest($1::text[], $2::uuid[], $3::bigint[]) AS v(b, r, ver)
		WHERE t.business_id = v.b AND t.run_id = v.r AND t.version = v.ver`, businesses, ids, versions)
	return tag.RowsAffected(), err
}

// columnTypes are the SQL types of runColumns, then the expected run_id and version.
var columnTypes = []string{"uuid", "text", "text", "text", "bool", "bool", "text", "int", "int", "int", "int",
	"timestamptz", "timestamptz", "timestamptz", "text", "text", "bigint", "bigint", "uuid", "bigint"}

// typedArray turns column i's values (nil for NULL) into a slice pgx encodes as that column's array type.
func typedArray(i int, vals []any) any {
	switch columnTypes[i] {
	case "uuid":
		return convert[uuid.UUID](vals)
	case "bool":
		return convert[bool](vals)
	case "int":
		return convert[int](vals)
	case "bigint":
		return convert[int64](vals)
	case "timestamptz":
		return nullable[time.Time](vals)
	}
	return nullable[string](vals)
}

func convert[T any](vals []any) []T {
	out := make([]T, len(vals))
	for i, v := range vals {
		out[i] = v.(T)
	}
	return out
}

func nullable[T any](vals []any) []*T {
	out := make([]*T, len(vals))
	for i, v := range vals {
		if v != nil {
			t := v.(T)
			out[i] = &t
		}
	}
	return out
}

// batchUpdateSQL updates every listed row whose run_id and version are still the expected ones.
func batchUpdateSQL(table, key string) string {
	var set, params, names strings.Builder
	for i, c := range runColumns {
		if c != key {
			if set.Len() > 0 {
				set.WriteString(", ")
			}
			fmt.Fprintf(&set, "%s = v.%s", c, c)
		}
		fmt.Fprintf(&params, "$%d::%s[], ", i+1, columnTypes[i])
		names.WriteString(c + ", ")
	}
	n := len(runColumns)
	fmt.Fprintf(&params, "$%d::uuid[], $%d::bigint[]", n+1, n+2)
	names.WriteString("exp_run_id, exp_version")
	return fmt.Sprintf(`UPDATE %[1]s AS t SET %[2]s FROM unnest(%[3]s) AS v(%[4]s)
		WHERE t.%[5]s = v.%[5]s AND t.run_id = v.exp_run_id AND t.version = v.exp_version`,
		table, set.String(), params.String(), names.String(), key)
}
