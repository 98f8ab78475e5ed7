package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// crashWorld is a log of ended runs (and one open run) written through the
// runner, a command per transaction, days before the real now.
type crashWorld struct {
	t    *testing.T
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	// before and after are each run's event positions before compaction,
	// and after it by the rule.
	before, after map[uuid.UUID][]int64
}

func newCrashWorld(t *testing.T, businesses, beats int) *crashWorld {
	w := &crashWorld{t: t, ctx: context.Background(), url: pgtest.URL(t)}
	w.pool = pgtest.Pool(t, w.url)
	clock := fakeclock.New(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	rn := runs.NewRunner(eventstore.New(w.pool), domain.DefaultPolicy())
	rn.Now = clock.Now
	meta := eventstore.Metadata{Actor: "worker:w"}
	for b := range businesses + 1 {
		business := fmt.Sprintf("b%02d", b)
		run := uuid.New()
		if _, err := rn.Start(w.ctx, domain.StartRun{RunID: run, BusinessID: business, WorkerID: "w", TotalCalls: 100000}, meta); err != nil {
			t.Fatal(err)
		}
		for i := range beats {
			clock.Advance(5 * time.Second)
			if _, err := rn.Execute(w.ctx, business, run, domain.RecordHeartbeat{CompletedCalls: i}, meta); err != nil {
				t.Fatal(err)
			}
		}
		if b < businesses { // the last business keeps its run open
			if _, err := rn.Execute(w.ctx, business, run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: beats}, meta); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := projections.Rebuild(w.ctx, w.pool, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	w.before, w.after = w.positions(), map[uuid.UUID][]int64{}
	store := eventstore.New(w.pool)
	for run := range w.before {
		recs, err := store.ReadStream(w.ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		events := make([]domain.Event, len(recs))
		for i, r := range recs {
			events[i] = r.Event
		}
		for i, keep := range domain.DefaultPolicy().Compact(events) {
			if keep {
				w.after[run] = append(w.after[run], recs[i].Position)
			}
		}
	}
	return w
}

func (w *crashWorld) positions() map[uuid.UUID][]int64 {
	w.t.Helper()
	rows, err := w.pool.Query(w.ctx, `SELECT stream_id, position FROM events ORDER BY stream_id, position`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	out := map[uuid.UUID][]int64{}
	for rows.Next() {
		var (
			id  uuid.UUID
			pos int64
		)
		if err := rows.Scan(&id, &pos); err != nil {
			w.t.Fatal(err)
		}
		out[id] = append(out[id], pos)
	}
	return out
}

// start runs the binary with args; with pauseAt it returns once the process
// says it paused there.
func (w *crashWorld) start(pauseAt string, args ...string) *exec.Cmd {
	w.t.Helper()
	cmd := exec.Command(servetest.Binary(w.t), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+w.url, "RUNLEDGER_TEST_PAUSE_AT="+pauseAt)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	paused := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "paused at ") {
				close(paused)
			}
		}
	}()
	if pauseAt != "" {
		select {
		case <-paused:
		case <-time.After(2 * time.Minute):
			w.t.Fatalf("%v never paused at %s", args, pauseAt)
		}
	}
	return cmd
}

func kill(cmd *exec.Cmd) {
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
}

// checkEachRunBeforeOrAfter: every run's events are exactly the ones before
// compaction or exactly the ones the rule keeps; it returns how many are
// compacted.
func (w *crashWorld) checkEachRunBeforeOrAfter(when string) int {
	w.t.Helper()
	now, compacted := w.positions(), 0
	for run, before := range w.before {
		switch got := now[run]; {
		case slices.Equal(got, before):
		case slices.Equal(got, w.after[run]):
			if len(w.after[run]) < len(before) {
				compacted++
			}
		default:
			w.t.Fatalf("%s: run %s holds %d events: neither the %d before nor the %d after", when, run, len(got), len(before), len(w.after[run]))
		}
	}
	return compacted
}

// TestCompactKilledLeavesEachRunBeforeOrAfter kills `runledger compact` inside
// a batch's transaction and after random short delays: each run is whole or
// compacted, never between, and a run to completion then finishes the job
// with a clean verify.
func TestCompactKilledLeavesEachRunBeforeOrAfter(t *testing.T) {
	w := newCrashWorld(t, 12, 120)
	args := []string{"compact", "--ended-before", "1h", "--batch", "3"}
	kill(w.start("batch-deleted", args...))
	if n := w.checkEachRunBeforeOrAfter("killed inside the first batch"); n != 0 {
		t.Fatalf("%d runs compacted by a transaction that never committed", n)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	for i := range 4 {
		cmd := w.start("", args...)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		kill(cmd)
		t.Logf("kill %d: %d runs compacted", i, w.checkEachRunBeforeOrAfter(fmt.Sprintf("kill %d", i)))
	}
	if out, err := exec.Command(servetest.Binary(t), "compact", "--database-url", w.url, "--ended-before", "1h").CombinedOutput(); err != nil {
		t.Fatalf("compact: %v\n%s", err, out)
	}
	if n := w.checkEachRunBeforeOrAfter("after a whole compaction"); n != 12 {
		t.Fatalf("%d runs compacted; want the 12 ended ones", n)
	}
	if out, err := exec.Command(servetest.Binary(t), "verify", "--database-url", w.url).CombinedOutput(); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err := exec.Command(servetest.Binary(t), "audit", "--database-url", w.url, "--business", "b00").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "the answer at every instant preserved") {
		t.Fatalf("audit does not show the compaction: %v\n%s", err, out)
	}
}

// TestEraseKilledLeavesTheBusinessWholeOrGone kills `runledger erase` inside
// its transaction and after random short delays: the business is whole or
// gone, and the others are never touched.
func TestEraseKilledLeavesTheBusinessWholeOrGone(t *testing.T) {
	w := newCrashWorld(t, 6, 60)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 10))
	check := func(when string, business string) bool {
		t.Helper()
		var events, rows int
		if err := w.pool.QueryRow(w.ctx, `SELECT (SELECT count(*) FROM events WHERE business_id = $1),
			(SELECT count(*) FROM runs WHERE business_id = $1) + (SELECT count(*) FROM run_snapshots WHERE business_id = $1)`,
			business).Scan(&events, &rows); err != nil {
			t.Fatal(err)
		}
		gone := events == 0 && rows == 0
		if !gone && (events != 62 || rows != 2) {
			t.Fatalf("%s: business %s has %d events and %d rows: neither whole (62, 2) nor gone", when, business, events, rows)
		}
		return gone
	}
	others := func() map[uuid.UUID][]int64 {
		all := w.positions()
		return all
	}
	for i, business := range []string{"b00", "b01", "b02"} {
		before := others()
		erase := []string{"erase", "--business", business, "--reason", "crash test"}
		kill(w.start("erase-deleted", erase...))
		if check("killed inside the transaction", business) {
			t.Fatalf("business %s erased by a transaction that never committed", business)
		}
		cmd := w.start("", erase...)
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		kill(cmd)
		gone := check(fmt.Sprintf("kill %d", i), business)
		if !gone {
			// The killed erase's backend may still hold its transaction (and
			// the rebuild lock it takes) until PostgreSQL notices the client
			// is gone: the next erase is refused meanwhile, and is retried.
			deadline := time.Now().Add(20 * time.Second)
			for {
				out, err := exec.Command(servetest.Binary(t), "erase", "--database-url", w.url, "--business", business, "--reason", "crash test").CombinedOutput()
				if err == nil {
					break
				}
				if !strings.Contains(string(out), "a rebuild is running") || time.Now().After(deadline) {
					t.Fatalf("erase: %v\n%s", err, out)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		check("after a whole erasure", business)
		after := others()
		for run, pos := range before {
			if _, ok := after[run]; ok && !slices.Equal(after[run], pos) {
				t.Fatalf("erasing %s changed run %s of another business", business, run)
			}
		}
	}
	if out, err := exec.Command(servetest.Binary(t), "verify", "--database-url", w.url).CombinedOutput(); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}
