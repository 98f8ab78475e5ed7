package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/servetest"
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
		scheduledCompaction{store: eventstore.New(w.pool), pool: w.pool, now: clk.Now, newTimer: clk.NewTimer,
			interval: time.Hour, endedBefore: 30 * time.Minute, policy: domain.DefaultPolicy(),
			logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.Run(ctx)
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

// Replicas each schedule compaction; one compacts at a time (the others'
// turns would only delete what it deleted and fail): a pass that finds the
// compaction lock held does nothing and the next one compacts.
func TestScheduledCompactionOneReplicaAtATime(t *testing.T) {
	w := newCrashWorld(t, 2, 10)
	conn, err := w.pool.Acquire(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(w.ctx, `SELECT pg_advisory_lock($1)`, int64(advisory.Compaction)); err != nil {
		t.Fatal(err)
	}
	clk := fakeclock.New(time.Date(2026, 1, 6, 9, 0, 0, 0, time.UTC))
	passes := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		scheduledCompaction{store: eventstore.New(w.pool), pool: w.pool, now: clk.Now, newTimer: clk.NewTimer,
			interval: time.Hour, endedBefore: 30 * time.Minute, policy: domain.DefaultPolicy(),
			logger: slog.New(slog.NewTextHandler(io.Discard, nil)), passed: func() { passes <- struct{}{} }}.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-passes:
	case <-time.After(60 * time.Second):
		t.Fatal("no pass")
	}
	var n int
	if err := w.pool.QueryRow(w.ctx, `SELECT count(*) FROM compactions`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d compactions while another holder had the lock (%v)", n, err)
	}
	if _, err := conn.Exec(w.ctx, `SELECT pg_advisory_unlock($1)`, int64(advisory.Compaction)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		clk.Advance(time.Hour)
		if err := w.pool.QueryRow(w.ctx, `SELECT count(*) FROM compactions WHERE finished_at IS NOT NULL AND runs = 2`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no compaction after the lock was released")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve --compact-ended-before compacts on its maintenance pool, judging the
// cutoff on the database's clock.
func TestServeCompactsOnSchedule(t *testing.T) {
	w := newCrashWorld(t, 2, 10) // ended in January 2026, long before the database's now
	// A pass skips runs a consumer group has not applied yet, and right
	// after start-up the groups (the webhooks' starts at the log's start)
	// may not have: passes a second apart, so a later one finds them.
	servetest.Start(t, servetest.Options{DatabaseURL: w.url, Secret: testSecret,
		Args: []string{"--compact-ended-before", "1h", "--compact-interval", "1s"}})
	deadline := time.Now().Add(60 * time.Second)
	for {
		var actor string
		err := w.pool.QueryRow(w.ctx, `SELECT actor FROM compactions WHERE finished_at IS NOT NULL AND runs = 2`).Scan(&actor)
		if err == nil && actor == "serve" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not compact the 2 ended runs: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
