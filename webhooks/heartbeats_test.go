package webhooks_test

import (
	"context"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/webhooks"
)

// The webhooks group does not read heartbeats (no webhook is about one), so
// its offset moves on the other events alone and stays behind the
// heartbeats that follow the last of them. Its lag counts what it reads
// (none of them), and compaction, which skips a run until every consumer
// group has passed its events, still compacts an ended run: the run's end is
// not a heartbeat and comes after its heartbeats.
func TestGroupSkipsHeartbeatsAndCompactionStillPasses(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ended := h.start("acme")
	for i := 1; i <= 3; i++ {
		h.clock.Advance(30 * time.Second)
		h.exec("acme", ended, domain.RecordHeartbeat{CompletedCalls: i})
	}
	h.complete("acme", ended, domain.OutcomeCompleted)
	open := h.start("beta")
	const trailing = 20
	for i := 1; i <= trailing; i++ {
		h.clock.Advance(30 * time.Second)
		h.exec("beta", open, domain.RecordHeartbeat{CompletedCalls: min(i, 10)})
	}

	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lag, err := webhooks.Lag(ctx, h.pool)
		if err != nil {
			t.Fatal(err)
		}
		if lag.Events == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhooks group did not catch up within 30s: %+v", lag)
		}
	}
	// Counted as a group that reads every event, it is behind by exactly
	// the trailing heartbeats: it never read them.
	all, err := projections.GroupLag(ctx, h.pool, webhooks.ConsumerGroup, false)
	if err != nil {
		t.Fatal(err)
	}
	if all.Events != trailing {
		t.Errorf("the webhooks group's offset is %d events (heartbeats included) behind the log, want the %d trailing heartbeats", all.Events, trailing)
	}

	res, err := eventstore.New(h.pool).Compact(ctx, eventstore.CompactParams{EndedBefore: h.clock.Now().Add(time.Hour),
		Actor: "test", Policy: domain.DefaultPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Runs != 1 || res.Skipped != 0 {
		t.Errorf("compaction after the webhooks group caught up: %d runs compacted, %d skipped; want the ended run compacted", res.Runs, res.Skipped)
	}
}
