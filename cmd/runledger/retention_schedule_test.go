package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
)

// serve's scheduled compaction judges "ended longer ago than
// --compact-ended-before" on the service's clock and waits on it: the runs,
// ended a minute ago by that clock, are left alone at first and compacted
// once the clock has moved past the cutoff.
func TestScheduledCompactionUsesTheServiceClock(t *testing.T) {
	w := newCrashWorld(t, 3, 10) // runs end at about 09:00:50 on 2026-01-05
	start := time.Date(2026, 1, 5, 9, 2, 0, 0, time.UTC)
	clk := fakeclock.New(start)
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		scheduledCompaction{store: eventstore.New(w.pool), now: clk.Now, newTimer: clk.NewTimer,
			interval: time.Hour, endedBefore: 30 * time.Minute, policy: domain.DefaultPolicy(),
			logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.run(ctx)
	}()
	defer func() { cancel(); <-done }()

	finished := func() (n, runs int) {
		if err := w.pool.QueryRow(w.ctx, `SELECT count(*), coalesce(sum(runs), 0) FROM compactions WHERE finished_at IS NOT NULL`).Scan(&n, &runs); err != nil {
			t.Fatal(err)
		}
		return n, runs
	}
	deadline := time.Now().Add(60 * time.Second)
	for n, _ := finished(); n == 0; n, _ = finished() {
		if time.Now().After(deadline) {
			t.Fatal("no compaction at start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var cutoff time.Time
	var runs int
	if err := w.pool.QueryRow(w.ctx, `SELECT ended_before, runs FROM compactions ORDER BY id LIMIT 1`).Scan(&cutoff, &runs); err != nil {
		t.Fatal(err)
	}
	if want := start.Add(-30 * time.Minute); !cutoff.Equal(want) || runs != 0 {
		t.Fatalf("first compaction: cutoff %s, %d runs; want cutoff %s (the service clock's now − 30m), 0 runs", cutoff.UTC(), runs, want)
	}
	// The clock moves an hour at a time until the next compaction has run.
	for n, runs := finished(); n < 2 || runs == 0; n, runs = finished() {
		if time.Now().After(deadline) {
			t.Fatalf("%d compactions, %d runs after the clock passed the cutoff", n, runs)
		}
		clk.Advance(time.Hour)
		time.Sleep(20 * time.Millisecond)
	}
	rows, err := w.pool.Query(w.ctx, `SELECT ended_before FROM compactions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&cutoff); err != nil {
			t.Fatal(err)
		}
		if d := cutoff.Sub(start.Add(-30 * time.Minute)); d < 0 || d%time.Hour != 0 || cutoff.After(clk.Now()) {
			t.Errorf("cutoff %s is not the service clock's now − 30m at a tick", cutoff.UTC())
		}
	}
}
