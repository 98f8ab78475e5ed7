package projections_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// roundTrips records what the projector sends, one entry per round trip:
// a statement, or the statements of a pipelined batch.
type roundTrips struct {
	mu    sync.Mutex
	trips [][]string
	open  []string
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = append(r.trips, []string{d.SQL})
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (r *roundTrips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open = append(r.open, d.SQL)
}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = append(r.trips, r.open)
	r.open = nil
}

// A batch's read-model writes, its offset and its notification to the
// other replicas go to PostgreSQL in one round trip (batch.ackLocked): no
// write of a read model or an offset travels alone.
func TestABatchAcksInOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	trips := &roundTrips{}
	url := pgtest.URL(t)
	pool := pgtest.TracedPool(t, url, trips)
	appender := pgtest.Pool(t, url)
	rn := runs.NewRunner(eventstore.New(appender), domain.DefaultPolicy())
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rn.Now = func() time.Time { now = now.Add(30 * time.Second); return now }
	startProjector(t, pool, projections.Options{NotifyChannel: "test_changes", Origin: "test"})
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	for calls := 1; calls <= 5; calls++ {
		if _, err := rn.Execute(ctx, "acme", run, domain.RecordHeartbeat{CompletedCalls: calls}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	waitCaughtUp(t, appender)

	trips.mu.Lock()
	defer trips.mu.Unlock()
	acks := 0
	for _, trip := range trips.trips {
		var offset, write, notify bool
		for _, sql := range trip {
			offset = offset || strings.Contains(sql, "INSERT INTO projection_offsets(offset_acked") // watermill's ack
			write = write || strings.Contains(sql, "INSERT INTO runs") || strings.Contains(sql, "UPDATE runs") ||
				strings.Contains(sql, "INSERT INTO active_runs") || strings.Contains(sql, "UPDATE active_runs")
			notify = notify || strings.Contains(sql, "pg_notify")
		}
		if !offset && (write || notify) {
			t.Errorf("a round trip wrote a read model or notified without the offset: %q", trip)
		}
		if offset {
			acks++
			if !write || !notify {
				t.Errorf("an ack went without its writes or notification: %q", trip)
			}
		}
	}
	if acks < 2 {
		t.Fatalf("saw %d acks, want one per group at least", acks)
	}
}
