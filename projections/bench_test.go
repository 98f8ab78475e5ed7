package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/runledger/runledger/projections"
)

// BenchmarkProjectorCatchUp measures how fast the live (per-message)
// projections drain a backlog of b.N events: ns/op is per event, both
// projections running.
func BenchmarkProjectorCatchUp(b *testing.B) {
	ctx := context.Background()
	pool, _ := seeded(b, 9, b.N)
	var events int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events)
	b.ResetTimer()
	start := time.Now()
	p, err := projections.NewProjector(pool, projections.Options{PollInterval: 5 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	waitCaughtUp(b, pool)
	b.StopTimer()
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	cancel()
	<-done
}
