package api_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/projections"
)

// A stream given ?after= waits for every read model it reads: with the runs
// model caught up and active_runs behind, it answers 503 read_model_behind
// like GET …/active, never 404 for the run that position started.
func TestStreamAfterWaitsForEveryReadModel(t *testing.T) {
	e := newEnvWith(t, func(c *api.Config) { c.ConsistencyWait = 300 * time.Millisecond })
	e.stopProjector()
	subscribed := make(chan struct{})
	p, err := projections.NewProjector(e.pool, projections.Options{Projections: []string{projections.Runs}, OnSubscribed: func() { close(subscribed) },
		PollInterval: 10 * time.Millisecond, Feed: e.feed, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-subscribed

	r := e.must(e.do("POST", "/v1/businesses/acme/runs", e.token("acme", api.RoleWorker),
		map[string]any{"total_calls": 3, "worker_id": "w"}), 201, "")
	after := "?after=" + r.header.Get("Runledger-Position")
	user := e.token("acme", api.RoleUser)
	e.must(e.do("GET", "/v1/businesses/acme/runs/"+r.str("run_id")+after, user, nil), 200, "") // the runs model has it
	e.must(e.do("GET", "/v1/businesses/acme/runs/active"+after, user, nil), 503, "read_model_behind")
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream"+after, user, nil), 503, "read_model_behind")
}
