package eventstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

// BenchmarkHeartbeatCommand measures one stored heartbeat command (load,
// decide, append) on a stream of 10 and of 10,000 events. The cost must not
// grow with the stream: compare the two ns/op.
func BenchmarkHeartbeatCommand(b *testing.B) {
	ctx := context.Background()
	store := eventstore.New(pgtest.NewDB(b))
	clock := fakeclock.New(t0)
	// Seed both streams before timing either, so neither pays for the
	// other's seeding (autovacuum of 10,000 fresh rows).
	streams := map[int]uuid.UUID{}
	for _, length := range []int{10, 10_000} {
		streams[length] = uuid.New()
		seedStream(b, store, business(streams[length]), streams[length], length, clock)
	}
	if _, err := eventstore.PoolOf(store).Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		b.Fatal(err)
	}
	rn := runs.NewRunner(store, domain.DefaultPolicy())
	rn.Now = clock.Now
	for _, length := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("stream=%d", length), func(b *testing.B) {
			run := streams[length]
			for i := 0; i < b.N; i++ {
				clock.Advance(6 * time.Second) // past the coalescing interval: every heartbeat is stored
				if _, err := rn.Execute(ctx, business(run), run, domain.RecordHeartbeat{}, eventstore.Metadata{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func business(run uuid.UUID) string { return "bench-" + run.String()[:8] }

// seedStream appends a started run and heartbeats up to length events, 500 per append.
func seedStream(b *testing.B, store *eventstore.Store, business string, run uuid.UUID, length int, clock *fakeclock.Clock) {
	b.Helper()
	ctx := context.Background()
	batch := []eventstore.NewEvent{{ID: uuid.New(), Event: domain.RunStarted{RunID: run, BusinessID: business,
		WorkerID: "w", TotalCalls: 1_000_000, OccurredAt: clock.Now()}}}
	var version int64
	for n := 1; n <= length; n++ {
		if n > 1 {
			clock.Advance(6 * time.Second)
			batch = append(batch, eventstore.NewEvent{ID: uuid.New(), Event: domain.Heartbeat{OccurredAt: clock.Now()}})
		}
		if len(batch) == 500 || n == length {
			res, err := store.Append(ctx, run, version, batch)
			if err != nil {
				b.Fatal(err)
			}
			version, batch = res.Run.Version, batch[:0]
		}
	}
}
