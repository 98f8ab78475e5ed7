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

// A backlog is read page after page without waiting for the poll, even
// when a full page holds an event that does not decode (recorded as poison,
// it still counts towards the page being full).
func TestABacklogWithAnUndecodableEventIsReadWithoutWaiting(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, occurred_at)
		VALUES ($1, $2, 1, 'x', 'NoSuchType', 1, '{}', now())`, uuid.New(), uuid.New()); err != nil {
		t.Fatal(err)
	}
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rn.Now = func() time.Time { now = now.Add(30 * time.Second); return now }
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 100}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	for calls := 1; calls <= 20; calls++ {
		if _, err := rn.Execute(ctx, "acme", run, domain.RecordHeartbeat{CompletedCalls: calls}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	startProjector(t, pool, projections.Options{BatchSize: 10, PollInterval: time.Minute})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, ok, err := projections.GetRun(ctx, pool, "acme", run)
		if err != nil {
			t.Fatal(err)
		}
		if ok && r.CompletedCalls == 20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the run is at %d of 20 calls (%v): the backlog waited for the poll", r.CompletedCalls, ok)
		}
	}
}
