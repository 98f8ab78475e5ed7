package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
)

// RebuildOptions configure Rebuild.
type RebuildOptions struct {
	// Projections to rebuild; all when empty.
	Projections []string
	// Progress, if set, receives progress lines.
	Progress io.Writer
}

// RebuildStats reports what a rebuild did.
type RebuildStats struct {
	Projection string
	Events     int64 // folded from the log in the bulk pass (once for all projections)
	CaughtUp   int64 // applied to the shadow table afterwards
	Rows       int
	Duration   time.Duration // the fold plus this projection's shadow, catch-up and swap
}

// catchUpBatch bounds one catch-up read.
const catchUpBatch = 1000

// Rebuild regenerates read models from the whole log while the service keeps
// serving: it folds the log in memory once (one streamed read) for all the
// projections asked for, and for each one COPYs the result into a shadow
// table, applies what arrived meanwhile, then in one transaction holds the
// consumer group, applies the last few events, swaps the shadow table in and
// moves the group's offset to match it.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, opts RebuildOptions) ([]RebuildStats, error) {
	names := opts.Projections
	if len(names) == 0 {
		names = Names
	}
	projs := make([]projection, len(names))
	for i, name := range names {
		var err error
		if projs[i], err = byName(name); err != nil {
			return nil, err
		}
	}
	unlock, err := lockRebuild(ctx, pool)
	if err != nil {
		return nil, err
	}
	defer unlock()
	start := time.Now()
	var f *folded
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		f, err = foldLog(ctx, tx, nil, newProgress(opts.Progress, "rebuild: fold"))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	folding := time.Since(start)
	runs := f.rows()
	var out []RebuildStats
	for _, proj := range projs {
		st, err := swapIn(ctx, pool, proj, proj.rows(runs), f.last)
		st.Events, st.Duration = f.events, folding+st.Duration
		out = append(out, st)
		if err != nil {
			return out, fmt.Errorf("rebuild %s: %w", proj.name, err)
		}
	}
	return out, nil
}

// swapIn writes rows (the log folded up to last) into a shadow table of
// proj, catches it up and swaps it in.
func swapIn(ctx context.Context, pool *pgxpool.Pool, proj projection, rows []RunRow, last Offset) (RebuildStats, error) {
	start := time.Now()
	st := RebuildStats{Projection: proj.name, Rows: len(rows)}
	shadow := proj.name + "_rebuild"
	if err := createShadow(ctx, pool, proj.name, shadow, rows); err != nil {
		return st, err
	}
	defer pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+shadow)
	for { // catch up without holding anything, until little is left
		n, err := catchUp(ctx, pool, proj, shadow, &last)
		st.CaughtUp += n
		if err != nil {
			return st, err
		}
		if n < catchUpBatch {
			break
		}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		n, err := swap(ctx, tx, proj, shadow, &last)
		st.CaughtUp += n
		return err
	})
	st.Duration = time.Since(start)
	return st, err
}

// createShadow makes an empty copy of the live table (indexes, storage
// parameters) and COPYs the rebuilt rows into it.
func createShadow(ctx context.Context, pool *pgxpool.Pool, live, shadow string, rows []RunRow) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+shadow); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE `+shadow+` (LIKE `+live+` INCLUDING ALL)`); err != nil {
			return err
		}
		var opts []string
		if err := tx.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass`, live).Scan(&opts); err != nil {
			return err
		}
		if len(opts) > 0 {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+shadow+` SET (`+strings.Join(opts, ", ")+`)`); err != nil {
				return err
			}
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{shadow}, columnNames(runColumns), pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			return rows[i].values(), nil
		}))
		return err
	})
}

// catchUp applies to the shadow table the next committed events after last.
func catchUp(ctx context.Context, pool *pgxpool.Pool, proj projection, shadow string, last *Offset) (int64, error) {
	var n int64
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var err error
		n, err = applyAfter(ctx, tx, proj, shadow, last)
		return err
	})
	return n, err
}

// swap holds the consumer group's offset row (so the live projector waits),
// applies the remaining events to the shadow table, and swaps it in.
func swap(ctx context.Context, tx pgx.Tx, proj projection, shadow string, last *Offset) (int64, error) {
	if err := holdOffset(ctx, tx, proj.name); err != nil {
		return 0, err
	}
	var total int64
	for {
		n, err := applyAfter(ctx, tx, proj, shadow, last)
		total += n
		if err != nil {
			return total, err
		}
		if n < catchUpBatch {
			break
		}
	}
	liveIndexes, err := indexesByShape(ctx, tx, proj.name)
	if err != nil {
		return total, err
	}
	old := proj.name + "_old"
	stmts := []string{
		`ALTER TABLE ` + proj.name + ` RENAME TO ` + old,
		`DROP TABLE ` + old,
		`ALTER TABLE ` + shadow + ` RENAME TO ` + proj.name,
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return total, err
		}
	}
	if err := renameIndexes(ctx, tx, proj.name, liveIndexes); err != nil {
		return total, err
	}
	return total, moveOffset(ctx, tx, proj.name, *last)
}

// indexesByShape maps each index of table by its definition without names
// ("UNIQUE USING btree (run_id)") to its name.
func indexesByShape(ctx context.Context, tx pgx.Tx, table string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return nil, err
		}
		_, using, _ := strings.Cut(def, " USING ")
		out[fmt.Sprint(strings.HasPrefix(def, "CREATE UNIQUE"), using)] = name
	}
	return out, rows.Err()
}

// renameIndexes gives the swapped-in table's indexes the names the live
// table's indexes had, matched by shape, so names do not drift per rebuild.
func renameIndexes(ctx context.Context, tx pgx.Tx, table string, names map[string]string) error {
	current, err := indexesByShape(ctx, tx, table)
	if err != nil {
		return err
	}
	for shape, name := range current {
		want, ok := names[shape]
		if !ok || want == name {
			continue
		}
		if _, err := tx.Exec(ctx, `ALTER INDEX `+pgx.Identifier{name}.Sanitize()+` RENAME TO `+pgx.Identifier{want}.Sanitize()); err != nil {
			return err
		}
	}
	return nil
}

// applyAfter applies up to catchUpBatch committed events after last to table,
// through the projection's per-event path, and advances last.
func applyAfter(ctx context.Context, tx pgx.Tx, proj projection, table string, last *Offset) (int64, error) {
	rows, err := tx.Query(ctx, fmt.Sprintf(eventsAfterSQL, eventstore.RecordedColumns), fmt.Sprint(last.TxID), last.Position, catchUpBatch)
	if err != nil {
		return 0, err
	}
	type item struct {
		tx  int64
		rec eventstore.Recorded
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (item, error) {
		var it item
		var err error
		it.rec, err = eventstore.ScanRecordedWith(row, &it.tx)
		return it, err
	})
	if err != nil {
		return 0, err
	}
	set := newRowSet(proj, table, nil)
	for _, it := range items {
		if _, err := set.apply(ctx, tx, it.rec); err != nil {
			return 0, fmt.Errorf("catch up: %w", err)
		}
	}
	if _, err := set.flush(ctx, tx); err != nil {
		return 0, fmt.Errorf("catch up: %w", err)
	}
	if n := len(items); n > 0 {
		*last = Offset{TxID: uint64(items[n-1].tx), Position: items[n-1].rec.Position}
	}
	return int64(len(items)), nil
}

// ErrRebuildInProgress refuses a rebuild while another one runs: both would
// write the same shadow tables.
var ErrRebuildInProgress = errors.New("another rebuild is in progress")

// lockRebuild takes the rebuild lock (advisory.Rebuild) on a connection of
// its own, or returns ErrRebuildInProgress (naming the holder's backend) if
// another rebuild has it.
func lockRebuild(ctx context.Context, pool *pgxpool.Pool) (unlock func(), err error) {
	lock, err := advisory.TryLock(ctx, pool, advisory.Rebuild)
	if err != nil {
		return nil, fmt.Errorf("rebuild: lock: %w", err)
	}
	if lock == nil {
		holder, _ := advisory.Holder(ctx, pool, advisory.Rebuild)
		return nil, fmt.Errorf("rebuild: %w (PostgreSQL backend %d holds the rebuild lock); run it again when that one ends", ErrRebuildInProgress, holder)
	}
	return func() { _ = lock.Unlock(ctx) }, nil
}
