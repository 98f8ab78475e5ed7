package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

// OnCommittedBeyondHeartbeats fires for a statement that stored anything
// but heartbeats, and never for heartbeats alone: the webhooks group is
// woken by it and must not read after every heartbeat, nor miss an end.
func TestCommittedBeyondHeartbeatsSkipsHeartbeatsOnly(t *testing.T) {
	for _, batchMax := range []int{0, 1} { // group commit on, and every append alone
		t.Run(fmt.Sprintf("batch max %d", batchMax), func(t *testing.T) {
			ctx := context.Background()
			pool := pgtest.NewDB(t)
			var (
				mu          sync.Mutex
				all, beyond []int64
			)
			store := eventstore.NewWithOptions(pool, eventstore.Options{BatchMax: batchMax,
				OnCommitted:                 func(last int64) { mu.Lock(); all = append(all, last); mu.Unlock() },
				OnCommittedBeyondHeartbeats: func(last int64) { mu.Lock(); beyond = append(beyond, last); mu.Unlock() }})
			runner := runs.NewRunner(store, domain.Policy{StaleAfter: domain.DefaultPolicy().StaleAfter})
			meta := eventstore.Metadata{Actor: "test"}
			id := uuid.New()
			start, err := runner.Start(ctx, domain.StartRun{RunID: id, BusinessID: "b", WorkerID: "w", TotalCalls: 10}, meta)
			if err != nil {
				t.Fatal(err)
			}
			var lastBeat int64
			for i := 1; i <= 5; i++ {
				res, err := runner.Execute(ctx, "b", id, domain.RecordHeartbeat{CompletedCalls: i}, meta)
				if err != nil {
					t.Fatal(err)
				}
				lastBeat = res.LastPosition
			}
			end, err := runner.Execute(ctx, "b", id, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 10}, meta)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(all) != 7 || all[len(all)-2] != lastBeat {
				t.Fatalf("OnCommitted saw %v; want the start, 5 heartbeats (the last at %d) and the end", all, lastBeat)
			}
			if want := []int64{start.LastPosition, end.LastPosition}; fmt.Sprint(beyond) != fmt.Sprint(want) {
				t.Fatalf("OnCommittedBeyondHeartbeats saw %v; want the start and the end only, %v", beyond, want)
			}
		})
	}
}
