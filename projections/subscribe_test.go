package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
)

// A replica frozen in the middle of a batch (SIGSTOP, a VM stall) holds its
// group's offset row, updated and uncommitted. Another replica starting then
// must still start: its projector's subscription may not wait on that row
// (it waited, hit its lock timeout, and serve exited naming the projector).
func TestProjectorStartsBesideAFrozenBatch(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	firstSubscribed := make(chan struct{})
	first, err := projections.NewProjector(pool, projections.Options{Logger: quietLogger(), OnSubscribed: func() { close(firstSubscribed) }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- first.Run(runCtx) }()
	select { // the groups' offset rows exist once it runs
	case <-firstSubscribed:
	case err := <-done:
		t.Fatalf("the first projector did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the first projector did not start within 30s")
	}
	cancel()
	<-done

	frozen, err := pool.Begin(ctx) // the frozen replica's batch
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Rollback(ctx)
	if _, err := frozen.Exec(ctx, `UPDATE projection_offsets SET offset_acked = offset_acked`); err != nil {
		t.Fatal(err)
	}

	cfg := pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "300"
	short, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	secondSubscribed := make(chan struct{})
	second, err := projections.NewProjector(short, projections.Options{Logger: quietLogger(), OnSubscribed: func() { close(secondSubscribed) }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { done2 <- second.Run(runCtx2) }()
	select {
	case <-secondSubscribed:
	case err := <-done2:
		t.Fatalf("the projector did not start beside a frozen batch: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the projector did not start within 30s beside a frozen batch")
	}
	cancel2()
	if err := <-done2; err != nil && ctx.Err() == nil && runCtx2.Err() == nil {
		t.Fatal(err)
	}
}
