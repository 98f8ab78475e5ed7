package longlog_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/longlog"
	"github.com/runledger/runledger/runs"
)

// TestReaperReadsFollowOpenRuns: the reaper's reads of the snapshots
// (SilentRuns, NextStaleAt, OldestOpenHeartbeat) cost what the open runs
// cost, not what the ended ones do, with no index on the stale_at or
// last_heartbeat_at that every heartbeat moves (so that a heartbeat's
// snapshot update can be HOT). With 100 open runs beside 10 k ended runs,
// then beside 110 k, each read is EXPLAINed (ANALYZE, BUFFERS) with the
// statistics from before the growth and with fresh ones: none may scan
// run_snapshots, none may touch many more buffers beside the many ended runs
// than beside the few, and each still answers about the open runs only.
func TestReaperReadsFollowOpenRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 110 k ended runs")
	}
	ctx := context.Background()
	rec := &statementRecorder{match: regexp.MustCompile(`\brun_snapshots\b`)}
	pool := recordingPool(t, rec)
	// The test, not autovacuum's timing, decides what the planner knows.
	if _, err := pool.Exec(ctx, `ALTER TABLE run_snapshots SET (autovacuum_enabled = false);
		ALTER TABLE events SET (autovacuum_enabled = false); ALTER TABLE events SET UNLOGGED`); err != nil {
		t.Fatal(err)
	}

	base := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	rn.Now = func() time.Time { return base }
	const open = 100
	for i := range open {
		rn.Now = func() time.Time { return base.Add(time.Duration(i) * time.Second) }
		if _, err := rn.Start(ctx, domain.StartRun{RunID: uuid.New(), BusinessID: fmt.Sprintf("open-%d", i), WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	store := eventstore.New(pool)
	ttl := domain.DefaultPolicy().StaleAfter

	reads := func(label string) map[string]readCost {
		t.Helper()
		stmts := map[string][]recorded{}
		run := func(name string, read func() error) {
			rec.start(name)
			err := read()
			stmts[name] = rec.stop()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		run("silent runs", func() error {
			silent, err := store.SilentRuns(ctx, base.Add(ttl+time.Hour), 1000)
			if err == nil && (len(silent) != open || !strings.HasPrefix(silent[0].BusinessID, "open-") ||
				silent[0].BusinessID != "open-0" || silent[open-1].BusinessID != fmt.Sprintf("open-%d", open-1)) {
				t.Errorf("%s: SilentRuns returned %d runs (first %+v), want the %d open runs, longest silent first", label, len(silent), silent[0], open)
			}
			return err
		})
		run("next stale at", func() error {
			at, ok, err := store.NextStaleAt(ctx)
			if err == nil && (!ok || !at.Equal(base.Add(ttl))) {
				t.Errorf("%s: NextStaleAt = %v, %v; want %v", label, at, ok, base.Add(ttl))
			}
			return err
		})
		run("oldest open heartbeat", func() error {
			at, ok, err := store.OldestOpenHeartbeat(ctx)
			if err == nil && (!ok || !at.Equal(base)) {
				t.Errorf("%s: OldestOpenHeartbeat = %v, %v; want %v", label, at, ok, base)
			}
			return err
		})
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		out := map[string]readCost{}
		for name, list := range stmts {
			if len(list) != 1 {
				t.Fatalf("%s sent %d statements on run_snapshots, want 1", name, len(list))
			}
			c := explain(t, conn, list[0])
			c.seqScan = strings.Contains(c.plan, "Seq Scan run_snapshots")
			out[name] = c
		}
		return out
	}
	grow := func(label string, events int) map[string]readCost {
		t.Helper()
		if _, err := longlog.Seed(ctx, pool, longlog.Options{Events: events, EventsPerRun: 3, Label: label}); err != nil {
			t.Fatal(err)
		}
		worst := reads(label + ", statistics from before")
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE run_snapshots`); err != nil {
			t.Fatal(err)
		}
		for name, c := range reads(label + ", fresh statistics") {
			prev := worst[name]
			if c.buffers < prev.buffers {
				c.buffers, c.plan = prev.buffers, prev.plan
			}
			c.seqScan = c.seqScan || prev.seqScan
			worst[name] = c
		}
		return worst
	}
	short := grow("short", 30_000)
	long := grow("long", 300_000)
	for name, s := range short {
		l := long[name]
		t.Logf("%-22s %5d buffers beside 10 k ended runs, %5d beside 110 k\n%s", name, s.buffers, l.buffers, l.plan)
		if l.buffers > 2*s.buffers+16 {
			t.Errorf("%s touched %d buffers beside 110 k ended runs, %d beside 10 k: it reads the ended runs\n%s", name, l.buffers, s.buffers, l.plan)
		}
		if s.seqScan || l.seqScan {
			t.Errorf("%s scans run_snapshots\n%s\n%s", name, s.plan, l.plan)
		}
	}
}
