package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

var (
	auditT0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	run1    = uuid.MustParse("11111111-1111-4111-8111-111111111111")
	run2    = uuid.MustParse("22222222-2222-4222-8222-222222222222")
	run3    = uuid.MustParse("33333333-3333-4333-8333-333333333333")
)

// scriptedHistory plays a business's day: a run whose worker dies and is
// reaped, a run the user cancels gracefully, a run that completes.
func scriptedHistory(t *testing.T, store *eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	now := auditT0
	rn := runs.NewRunner(store, domain.DefaultPolicy())
	rn.Now = func() time.Time { return now }
	worker := eventstore.Metadata{Actor: "worker:dialer-1"}
	user := eventstore.Metadata{Actor: "user:alice"}
	do := func(advance time.Duration, run uuid.UUID, cmd domain.Command, meta eventstore.Metadata) {
		t.Helper()
		now = now.Add(advance)
		var err error
		if start, ok := cmd.(domain.StartRun); ok {
			_, err = rn.Start(ctx, start, meta)
		} else {
			_, err = rn.Execute(ctx, "acme", run, cmd, meta)
		}
		if err != nil {
			t.Fatalf("%T at %s: %v", cmd, now, err)
		}
	}
	do(0, run1, domain.StartRun{RunID: run1, BusinessID: "acme", WorkerID: "dialer-1", TotalCalls: 100}, worker)
	do(10*time.Second, run1, domain.RecordHeartbeat{CompletedCalls: 10, FailedCalls: 1}, worker)
	do(10*time.Second, run1, domain.RecordHeartbeat{CompletedCalls: 20, FailedCalls: 2}, worker)
	// The worker dies at 09:00:20; the reaper finds it 15m3s later.
	do(15*time.Minute+3*time.Second, run1, domain.FailStale{DetectedBy: "reaper:replica-a"}, eventstore.Metadata{Actor: "reaper:replica-a"})
	do(time.Minute, run2, domain.StartRun{RunID: run2, BusinessID: "acme", WorkerID: "dialer-2", TotalCalls: 50}, eventstore.Metadata{Actor: "worker:dialer-2"})
	do(30*time.Second, run2, domain.RecordHeartbeat{CompletedCalls: 5}, eventstore.Metadata{Actor: "worker:dialer-2"})
	do(30*time.Second, run2, domain.RequestCancel{Reason: "wrong list", RequestedBy: "user:alice"}, user)
	do(2*time.Second, run2, domain.RecordHeartbeat{CompletedCalls: 6}, eventstore.Metadata{Actor: "worker:dialer-2"})
	do(1*time.Second, run2, domain.CompleteRun{Outcome: domain.OutcomeCancelled, CompletedCalls: 6}, eventstore.Metadata{Actor: "worker:dialer-2"})
	do(time.Minute, run3, domain.StartRun{RunID: run3, BusinessID: "acme", WorkerID: "dialer-2", TotalCalls: 3}, eventstore.Metadata{Actor: "worker:dialer-2"})
	do(time.Minute, run3, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 2, FailedCalls: 1}, eventstore.Metadata{Actor: "worker:dialer-2"})
}

// A run filter and a range cut the timeline, and a ranged timeline still
// knows each run's total. (The whole audit output is golden-tested over HTTP
// in api/audit_golden_test.go.)
func TestTimelineFilters(t *testing.T) {
	ctx := context.Background()
	store := eventstore.New(pgtest.NewDB(t))
	scriptedHistory(t, store)
	only, err := audit.Timeline(ctx, store, eventstore.BusinessQuery{BusinessID: "acme", RunID: run2,
		Since: auditT0.Add(16*time.Minute + 30*time.Second)}, domain.DefaultPolicy())
	if err != nil || len(only) != 4 || only[0].Type != domain.TypeHeartbeat {
		t.Fatalf("run 2 from 09:16 = %d entries %v", len(only), err)
	}
	if !strings.Contains(only[0].Summary, "5/50 done") {
		t.Fatalf("a ranged timeline lost the run's total: %q", only[0].Summary)
	}
}

// A support person pastes an instant from the timeline: replay at exactly an
// event's occurred_at must include that event.
func TestReplayAtAnEventsExactInstant(t *testing.T) {
	ctx := context.Background()
	store := eventstore.New(pgtest.NewDB(t))
	scriptedHistory(t, store)
	entries, err := audit.Timeline(ctx, store, eventstore.BusinessQuery{BusinessID: "acme"}, domain.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		res, err := audit.Replay(ctx, store, "acme", e.OccurredAt, domain.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if res.Run == nil || res.Run.ID != e.RunID || res.Run.Version < versionOf(t, entries, e) {
			t.Fatalf("replay at %s (%s of run %s) folded %+v", e.OccurredAt.Format(time.RFC3339Nano), e.Type, e.RunID, res.Run)
		}
		wantActive := e.Type == domain.TypeRunStarted || e.Type == domain.TypeHeartbeat || e.Type == domain.TypeCancelRequested
		if res.Active != wantActive {
			t.Fatalf("replay at the instant of %s: active=%v (%s), want %v", e.Type, res.Active, res.Reason, wantActive)
		}
	}
}

// versionOf is the stream version e has in its run (its rank among the run's entries).
func versionOf(t *testing.T, entries []audit.TimelineEntry, e audit.TimelineEntry) int64 {
	t.Helper()
	var v int64
	for _, x := range entries {
		if x.RunID == e.RunID {
			v++
			if x.Position == e.Position {
				return v
			}
		}
	}
	t.Fatalf("entry %d not found", e.Position)
	return 0
}
