package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// A group reads when it has reason to: after a batch during which no
// wake-up came, it waits for the next one instead of reading again at once
// (a read that would find nothing), and a sibling's commit wakes it only if
// its last read began while that sibling's batch was open. Appends arrive
// one at a time here, each awaited, with the poll fallback far away.
func TestAGroupDoesNotReadAgainWithNothingAnnounced(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	var p *projections.Projector
	store := eventstore.NewWithOptions(pool, eventstore.Options{OnCommitted: func(last int64) { p.Wake(last) }})
	rn := runs.NewRunner(store, domain.DefaultPolicy())
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rn.Now = func() time.Time { now = now.Add(30 * time.Second); return now } // every heartbeat is stored
	metrics := projections.NewMetrics(prometheus.NewRegistry())
	var err error
	if p, err = projections.NewProjector(pool, projections.Options{Metrics: metrics, PollInterval: time.Minute, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() { cancel(); <-done }()
	waitReads := func(group string, atLeast float64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); reads(metrics, group, "events") < atLeast; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s made %v reads with events, want %v", group, reads(metrics, group, "events"), atLeast)
			}
		}
	}
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 100}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, pool)
	base := map[string]float64{}
	for _, g := range projections.Names {
		base[g] = reads(metrics, g, "empty")
	}
	const appends = 30
	for i := 1; i <= appends; i++ {
		if _, err := rn.Execute(ctx, "acme", run, domain.RecordHeartbeat{CompletedCalls: i}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
		waitCaughtUp(t, pool)
	}
	for _, g := range projections.Names {
		waitReads(g, 2)
	}
	time.Sleep(20 * time.Millisecond) // a read at once after the last batch would have happened by now
	// Each append is read by both groups at once. The one whose batch began
	// second may have been blind to what the other's transaction hid, so
	// the other's commit makes it read again: at most one read per append
	// finds nothing (it was two or more per append, one per group and
	// sibling commit, when every batch was followed by another read).
	empty := 0.0
	for _, g := range projections.Names {
		empty += reads(metrics, g, "empty") - base[g]
	}
	if empty > appends+3 {
		t.Errorf("the groups read %v times and found nothing, over %d appends each awaited", empty, appends)
	}
}

func reads(m *projections.Metrics, group, result string) float64 {
	return testutil.ToFloat64(m.Queries.WithLabelValues(group, result))
}
