package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// b12 is compaction on a long log of the default shape: runs heartbeating
// every 5 s with progress, 15 min TTL and 10 min stall threshold, ended a
// day before the cutoff, written through the event store in small
// transactions (a chunk of one run's events each, with its snapshot). It
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
	runs, beats := b.sizes.B12Runs, b.sizes.B12Heartbeats
	end, err := seedEndedRuns(ctx, pool, runs, beats, time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC))
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
	res, err := eventstore.New(pool).Compact(ctx, eventstore.CompactParams{EndedBefore: end.Add(24 * time.Hour), Actor: "bench",
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
	if _, err := seedEndedRuns(ctx, pool, int(res.EventsRemoved)/(beats+2), beats, end.Add(time.Hour)); err != nil {
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
	shape := fmt.Sprintf("%d runs × %d heartbeats (5 s apart, progress each, 15m TTL, 10m stall)", runs, beats)
	b.report.add(Result{ID: "B12", Figure: "heartbeat rows after ÷ before compaction", Value: rows, Unit: "ratio",
		Target: "≤ 0.02", Pass: rows <= 0.02, Notes: fmt.Sprintf("%s: %d → %d heartbeats", shape, before.rows, after.rows)})
	b.report.add(Result{ID: "B12", Figure: "heartbeat bytes after ÷ before compaction", Value: bytes, Unit: "ratio",
		Target: "≤ 0.02", Pass: bytes <= 0.02, Notes: fmt.Sprintf("pg_column_size of the rows: %d → %d bytes", before.bytes, after.bytes)})
	rate := float64(res.EventsRemoved) / took.Seconds()
	b.report.add(Result{ID: "B12", Figure: "compaction speed", Value: rate, Unit: "events removed/s", Target: "information", Pass: true,
		Notes: fmt.Sprintf("%d runs, %d heartbeats removed in %s, 50 runs per transaction", res.Runs, res.EventsRemoved, took.Round(time.Millisecond))})
	refill := refilled.total() - vacuumed.total()
	b.report.add(Result{ID: "B12", Figure: "disk growth appending as many events again after compaction + VACUUM", Value: mib(refill), Unit: "MiB",
		Baseline: "MiB the removed events took", BaselineValue: mib(sizeBefore.total()) * float64(res.EventsRemoved) / float64(before.rows+int64(2*runs)),
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

// seedEndedRuns writes runs (one business each) that start at from, one
// after another, each heartbeating every 5 s with progress and then
// completing, through Store.Append in chunks of 100 events per transaction.
// It returns when the last run ended.
func seedEndedRuns(ctx context.Context, pool *pgxpool.Pool, runs, beats int, from time.Time) (time.Time, error) {
	store := eventstore.New(pool)
	p := domain.DefaultPolicy()
	at := from
	for r := range runs {
		id := uuid.New()
		run := domain.Run{}
		pending := []eventstore.NewEvent{}
		add := func(e domain.Event) {
			run = domain.Evolve(run, e)
			pending = append(pending, eventstore.NewEvent{ID: uuid.New(), Event: e, Metadata: eventstore.Metadata{Actor: "worker:bench"}})
		}
		flush := func() error {
			if len(pending) == 0 {
				return nil
			}
			_, err := store.Append(ctx, id, run.Version-int64(len(pending)), pending)
			pending = pending[:0]
			return err
		}
		add(domain.RunStarted{RunID: id, BusinessID: fmt.Sprintf("b12-%d-%d", from.Unix(), r), WorkerID: "dialer",
			TotalCalls: beats * 3, StaleAfter: domain.Duration(p.StaleAfter), StallAfter: domain.Duration(p.StallAfter), OccurredAt: at})
		for i := 1; i <= beats; i++ {
			at = at.Add(5 * time.Second)
			add(domain.Heartbeat{CompletedCalls: i * 3, OccurredAt: at})
			if len(pending) == 100 {
				if err := flush(); err != nil {
					return at, err
				}
			}
		}
		at = at.Add(time.Second)
		add(domain.RunCompleted{Outcome: domain.OutcomeCompleted, CompletedCalls: beats * 3, OccurredAt: at})
		if err := flush(); err != nil {
			return at, err
		}
	}
	return at, nil
}
