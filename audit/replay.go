package audit

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// ReplayResult is a business's state replayed to an instant: what
// GET …/runs/active would have answered then, and why.
type ReplayResult struct {
	BusinessID string    `json:"business_id"`
	At         time.Time `json:"at"`
	// StaleAfter is the TTL the answer was judged by: the run's own, as
	// recorded when it started (the service's for a run that recorded none).
	StaleAfter string      `json:"stale_after"`
	Status     int         `json:"answer_status"`
	Active     bool        `json:"active"`
	Reason     string      `json:"reason"`
	Run        *domain.Run `json:"run"`
	Events     int         `json:"events_folded"`
}

// Replay folds the events of the business's last run started at or before
// at, up to at, and judges it as the API does, by the run's own policy
// (policy for what the run did not record): so changing the service's
// configuration does not change history's answers. Only that run can have
// been active at at: a start ends or refuses any open run first.
func Replay(ctx context.Context, store *eventstore.Store, businessID string, at time.Time, policy domain.Policy) (ReplayResult, error) {
	// The log keeps microseconds: judge the instant at the log's precision, so
	// the run lookup and the fold below agree on which events happened by then.
	at = at.UTC().Truncate(time.Microsecond)
	res := ReplayResult{BusinessID: businessID, At: at, StaleAfter: policy.StaleAfter.String(), Status: 404}
	runID, ok, err := store.LastStartedRun(ctx, businessID, at)
	if err != nil {
		return res, err
	}
	if !ok {
		res.Reason = "no run had started by then: 404 no_active_run"
		return res, nil
	}
	events, err := store.ReadBusiness(ctx, eventstore.BusinessQuery{BusinessID: businessID, RunID: runID, Through: at})
	if err != nil {
		return res, err
	}
	var run domain.Run
	for _, e := range events {
		run.Version = e.Version - 1 // the log's version: a compacted run has holes
		run = domain.Evolve(run, e.Event)
	}
	res.Run, res.Events = &run, len(events)
	ttl := policy.StaleAfterFor(run)
	res.StaleAfter = ttl.String()
	short := ShortIDs([]uuid.UUID{runID})[runID]
	switch {
	case run.Ended():
		res.Reason = fmt.Sprintf("run %s had ended at %s (%s, %s): 404 no_active_run", short,
			run.EndedAt.UTC().Format(time.RFC3339), run.Status, run.EndReason)
	case !run.Active(at, policy.StaleAfter):
		res.Reason = fmt.Sprintf("run %s silent for %s at that instant (TTL %s): not active, 404 no_active_run", short,
			run.SilentFor(at).Round(time.Second), ttl)
	default:
		res.Status, res.Active = 200, true
		res.Reason = fmt.Sprintf("run %s last sign of life %s earlier (TTL %s), %s%s: active, 200", short,
			run.SilentFor(at).Round(time.Second), ttl, progress(run.CompletedCalls, run.FailedCalls, run.TotalCalls), flags(run, at, policy))
	}
	return res, nil
}

// flags says what else the page showed of an active run: paused, stalled.
func flags(run domain.Run, at time.Time, policy domain.Policy) string {
	var out string
	if run.Paused {
		out += fmt.Sprintf(", paused since %s", run.PausedAt.UTC().Format(timeFormat))
	}
	if policy.Stalled(run, at) {
		out += fmt.Sprintf(", stalled since %s (no progress for %s)", policy.StalledSince(run).UTC().Format(timeFormat),
			at.Sub(run.ProgressAt()).Round(time.Second))
	}
	return out
}

// WriteReplay prints a replay result for people.
func WriteReplay(w io.Writer, r ReplayResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "business %s at %s (TTL %s)\n", r.BusinessID, r.At.Format(time.RFC3339Nano), r.StaleAfter)
	fmt.Fprintf(&b, "GET /v1/businesses/%s/runs/active would have answered %d\n", r.BusinessID, r.Status)
	fmt.Fprintf(&b, "why: %s\n", r.Reason)
	if r.Run != nil {
		fmt.Fprintf(&b, "run %s: status %s, cancel requested %v, paused %v, %s, last sign of life %s, version %d (%d events folded)\n",
			r.Run.ID, r.Run.Status, r.Run.CancelRequested, r.Run.Paused,
			progress(r.Run.CompletedCalls, r.Run.FailedCalls, r.Run.TotalCalls),
			r.Run.LastHeartbeatAt.UTC().Format(time.RFC3339), r.Run.Version, r.Events)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
