package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/longlog"
)

// b12 is compaction on B11's long log (internal/longlog: runs of 100 events
// over 1,000 businesses, heartbeats every 5 s with progress, 15 min TTL and
// 10 min stall threshold, all ended, written in many small transactions). It
// reports heartbeat rows and bytes after ÷ before (target ≤ 0.02),
// compaction's events/s, and the events table's size on disk before, after,
// after VACUUM, after appending as many events again as were removed (VACUUM
// made their heap space reusable: the heap should not grow, but the indexes
// on ascending keys do), after REINDEX CONCURRENTLY (which gives the
// indexes' space back without blocking appends) and after VACUUM FULL (what
// only a rewrite gives back to the file system; it blocks the table).
func (b *bench) b12(ctx context.Context) error {
	_, pool, err := b.database(ctx, "bench_b12")
	if err != nil {
		return err
	}
	defer pool.Close()
	seeded, err := longlog.Seed(ctx, pool, longlog.Options{Events: b.sizes.B12Events, Label: "b12"})
	if err != nil {
		return err
	}
	before, err := heartbeatStats(ctx, pool)
	if err != nil {
		return err
	}
	sizeBefore, err := eventsSize(ctx, pool)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := eventstore.New(pool).Compact(ctx, eventstore.CompactParams{EndedBefore: time.Now(), Actor: "bench",
		Policy: domain.DefaultPolicy()})
	if err != nil {
		return err
	}
	took := time.Since(start)
	after, err := heartbeatStats(ctx, pool)
	if err != nil {
		return err
	}
	vacuum := func(sql string) (relSize, error) {
		if _, err := pool.Exec(ctx, sql); err != nil {
			return relSize{}, err
		}
		return eventsSize(ctx, pool)
	}
	vacuumed, err := vacuum("VACUUM ANALYZE events")
	if err != nil {
		return err
	}
	if _, err := longlog.Seed(ctx, pool, longlog.Options{Events: int(res.EventsRemoved), Label: "refill"}); err != nil {
		return err
	}
	refilled, err := eventsSize(ctx, pool)
	if err != nil {
		return err
	}
	reindexed, err := vacuum("REINDEX TABLE CONCURRENTLY events")
	if err != nil {
		return err
	}
	full, err := vacuum("VACUUM FULL events")
	if err != nil {
		return err
	}
	rows := float64(after.rows) / float64(before.rows)
	bytes := float64(after.bytes) / float64(before.bytes)
	shape := fmt.Sprintf("B11's long log, %d events in %d runs of 100 (heartbeats 5 s apart with progress, 15m TTL, 10m stall)",
		seeded.Events, seeded.Runs)
	b.report.add(Result{ID: "B12", Figure: "heartbeat rows after ÷ before compaction", Value: rows, Unit: "ratio",
		Target: "≤ 0.02", Pass: rows <= 0.02, Notes: fmt.Sprintf("%s: %d → %d heartbeats", shape, before.rows, after.rows)})
	b.report.add(Result{ID: "B12", Figure: "heartbeat bytes after ÷ before compaction", Value: bytes, Unit: "ratio",
		Target: "≤ 0.02", Pass: bytes <= 0.02, Notes: fmt.Sprintf("pg_column_size of the rows: %d → %d bytes", before.bytes, after.bytes)})
	rate := float64(res.EventsRemoved) / took.Seconds()
	b.report.add(Result{ID: "B12", Figure: "compaction speed", Value: rate, Unit: "events removed/s", Target: "information", Pass: true,
		Notes: fmt.Sprintf("%d runs, %d heartbeats removed in %s, 50 runs per transaction", res.Runs, res.EventsRemoved, took.Round(time.Millisecond))})
	refill := refilled.total() - vacuumed.total()
	b.report.add(Result{ID: "B12", Figure: "disk growth appending as many events again after compaction + VACUUM", Value: mib(refill), Unit: "MiB",
		Baseline: "MiB the removed events took", BaselineValue: mib(sizeBefore.total()) * float64(res.EventsRemoved) / float64(seeded.Events),
		Target: "information", Pass: true,
		Notes: fmt.Sprintf("events heap + indexes MiB: before %.1f + %.1f; compacted and vacuumed %.1f + %.1f; refilled %.1f + %.1f; after REINDEX CONCURRENTLY %.1f + %.1f; after VACUUM FULL %.1f + %.1f",
			mib(sizeBefore.heap), mib(sizeBefore.index), mib(vacuumed.heap), mib(vacuumed.index), mib(refilled.heap), mib(refilled.index),
			mib(reindexed.heap), mib(reindexed.index), mib(full.heap), mib(full.index))})
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

type hbStats struct{ rows, bytes int64 }

func heartbeatStats(ctx context.Context, pool *pgxpool.Pool) (hbStats, error) {
	var s hbStats
	err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(pg_column_size(e.*)), 0) FROM events e WHERE type = 'Heartbeat'`).Scan(&s.rows, &s.bytes)
	return s, err
}

// relSize is the events table's heap (with TOAST) and its indexes.
type relSize struct{ heap, index int64 }

func (r relSize) total() int64 { return r.heap + r.index }

func eventsSize(ctx context.Context, pool *pgxpool.Pool) (relSize, error) {
	var r relSize
	err := pool.QueryRow(ctx, `SELECT pg_table_size('events'), pg_indexes_size('events')`).Scan(&r.heap, &r.index)
	return r, err
}
