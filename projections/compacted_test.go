package projections_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
)

// A consumer group that reads a compacted log from its start (a new read
// model, or a group whose offsets were reset) folds past the holes that
// compaction left in ended runs' streams: nothing is poisoned and the read
// models equal the fold of the log.
func TestNewGroupReadsCompactedLog(t *testing.T) {
	ctx := context.Background()
	pool, _ := seeded(t, 23, 600)
	stop := startProjector(t, pool, projections.Options{})
	waitCaughtUp(t, pool)
	stop()
	res, err := eventstore.New(pool).Compact(ctx, eventstore.CompactParams{
		EndedBefore: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), Actor: "test", Policy: domain.DefaultPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Runs == 0 || res.EventsRemoved == 0 {
		t.Fatalf("compaction removed nothing (%+v): the test needs holes", res)
	}
	// The groups start again from the log's beginning, on empty read models.
	for _, q := range []string{`DELETE FROM projection_offsets`, `DELETE FROM runs`, `DELETE FROM active_runs`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	startProjector(t, pool, projections.Options{MaxRetries: 1})
	waitCaughtUp(t, pool)
	var poisoned int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_poison`).Scan(&poisoned); err != nil {
		t.Fatal(err)
	}
	if poisoned != 0 {
		t.Errorf("%d events poisoned after compaction's holes", poisoned)
	}
	assertVerified(t, pool)
}

// The erasure function refuses to run beside a rebuild by taking the rebuild's
// advisory lock, written as a literal in SQL: it must be advisory.Rebuild.
func TestEraseFunctionTakesTheRebuildLock(t *testing.T) {
	pool := pgtest.NewDB(t)
	var def string
	if err := pool.QueryRow(context.Background(),
		`SELECT pg_get_functiondef('lifecycle_erase_business(text, text, text)'::regprocedure)`).Scan(&def); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("pg_try_advisory_xact_lock(%d)", int64(advisory.Rebuild))
	if !strings.Contains(def, want) {
		t.Fatalf("lifecycle_erase_business does not take %s (the rebuild lock):\n%s", want, def)
	}
}
