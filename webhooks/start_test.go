package webhooks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
	"github.com/runledger/runledger/webhooks"
)

// A log written before any endpoint existed owes no delivery: deployed on
// a long log, the webhooks group starts at the log's head instead of
// reading all of it first. With an endpoint registered before the group
// ever ran, it starts at the log's start, so nothing owed is skipped.
func TestWebhooksGroupStartsAtTheHeadOfALogOlderThanEveryEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name          string
		endpointFirst bool
	}{{"no endpoint yet", false}, {"an endpoint already registered", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pool := pgtest.NewDB(t)
			runner := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
			if tc.endpointFirst {
				eps := &webhooks.Endpoints{Pool: pool, Policy: webhooks.Policy{AllowPrivate: true, AllowInsecure: true}}
				if _, err := eps.Create(ctx, "b1", webhooks.NewEndpoint{URL: "http://127.0.0.1:9/hook", Events: []string{"run.completed"}}); err != nil {
					t.Fatal(err)
				}
			}
			const ended = 30
			for range ended {
				id := uuid.New()
				if _, err := runner.Start(ctx, domain.StartRun{RunID: id, BusinessID: "b1", WorkerID: "w", TotalCalls: 1}, eventstore.Metadata{Actor: "t"}); err != nil {
					t.Fatal(err)
				}
				if _, err := runner.Execute(ctx, "b1", id, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 1}, eventstore.Metadata{Actor: "t"}); err != nil {
					t.Fatal(err)
				}
			}
			var batches atomic.Int64 // batches that held events: what the group read
			proj, err := webhooks.NewProjector(pool, webhooks.ProjectorOptions{PollInterval: 50 * time.Millisecond, Logger: quiet,
				OnCommitted: func() { batches.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- proj.Run(runCtx) }()
			defer func() { cancel(); <-done }()
			// Wait for the group to subscribe and catch up, then count what
			// it made: deliveries exist only if it read the old events.
			deadline := time.Now().Add(20 * time.Second)
			for {
				lag, err := webhooks.Lag(ctx, pool)
				if err == nil && lag.Events == 0 {
					var rows int
					if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_offsets WHERE consumer_group = $1`, webhooks.ConsumerGroup).Scan(&rows); err != nil {
						t.Fatal(err)
					}
					if rows == 1 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the webhooks group did not catch up: lag %+v, %v", lag, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			var deliveries, offset int64
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries`).Scan(&deliveries); err != nil {
				t.Fatal(err)
			}
			if err := pool.QueryRow(ctx, `SELECT offset_acked FROM projection_offsets WHERE consumer_group = $1`, webhooks.ConsumerGroup).Scan(&offset); err != nil {
				t.Fatal(err)
			}
			var head int64
			if err := pool.QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&head); err != nil {
				t.Fatal(err)
			}
			if tc.endpointFirst {
				if deliveries != ended {
					t.Fatalf("%d deliveries for %d runs completed after the endpoint was registered; want one each", deliveries, ended)
				}
				return
			}
			if offset != head || deliveries != 0 || batches.Load() != 0 {
				t.Fatalf("with no endpoint, the group read %d batches of the old log, made %d deliveries and stands at %d (head %d); want it started at the head, having read nothing",
					batches.Load(), deliveries, offset, head)
			}
		})
	}
}
