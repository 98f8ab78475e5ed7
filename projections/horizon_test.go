package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// An event committed while another transaction with an xid is open is
// hidden from the projector (it reads below the cluster's xmin) until that
// transaction ends. The projector must notice the horizon moving by itself:
// nothing else wakes it (no append, no NOTIFY), and its poll is 30 s here.
func TestProjectorNoticesTheHorizonMoving(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	var proj *projections.Projector
	store := eventstore.NewWithOptions(pool, eventstore.Options{OnCommitted: func(last int64) { proj.Wake(last) }})
	runner := runs.NewRunner(store, domain.DefaultPolicy())
	subscribed := make(chan struct{})
	p, err := projections.NewProjector(pool, projections.Options{PollInterval: 30 * time.Second, Logger: quietLogger(),
		OnSubscribed: func() { close(subscribed) }})
	if err != nil {
		t.Fatal(err)
	}
	proj = p
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-subscribed

	holder, err := pool.Begin(ctx) // another application's transaction, with an xid
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	runID := uuid.Must(uuid.NewV7())
	if _, err := runner.Start(ctx, domain.StartRun{RunID: runID, BusinessID: "b", WorkerID: "w", TotalCalls: 1}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the projector's short retries of a told event
	if _, ok, err := projections.GetRun(ctx, pool, "b", runID); err != nil || ok {
		t.Fatalf("the run was applied while hidden behind an open transaction (ok=%v, err=%v)", ok, err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	for {
		if _, ok, err := projections.GetRun(ctx, pool, "b", runID); err != nil {
			t.Fatal(err)
		} else if ok {
			t.Logf("applied %s after the horizon moved", time.Since(moved).Round(time.Millisecond))
			return
		}
		if time.Since(moved) > 10*time.Second {
			t.Fatalf("the run was not applied %s after the transaction hiding it ended", time.Since(moved).Round(time.Millisecond))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
