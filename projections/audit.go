package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// TimelineEntry is one event of a business's history, with who caused it and
// what it meant.
type TimelineEntry struct {
	Position   int64           `json:"position"`
	OccurredAt time.Time       `json:"occurred_at"`
	RecordedAt time.Time       `json:"recorded_at"`
	RunID      uuid.UUID       `json:"run_id"`
	Type       string          `json:"type"`
	Actor      string          `json:"actor"`
	Summary    string          `json:"summary"`
	Data       json.RawMessage `json:"data"`
}

// silenceWorthNoting is the gap between two events of a run that the
// timeline calls out.
const silenceWorthNoting = time.Minute

// Timeline returns the events selected by q, explained. Runs whose start lies
// before q's range are described with their write-side state for the totals.
func Timeline(ctx context.Context, store *eventstore.Store, q eventstore.BusinessQuery) ([]TimelineEntry, error) {
	events, err := store.ReadBusiness(ctx, q)
	if err != nil {
		return nil, err
	}
	totals, err := runTotals(ctx, store, events)
	if err != nil {
		return nil, err
	}
	lastSeen := map[uuid.UUID]time.Time{}
	out := make([]TimelineEntry, 0, len(events))
	for _, e := range events {
		summary := summarize(e.Event, totals[e.StreamID])
		_, stale := e.Event.(domain.RunStaleFailed) // says how long it was silent itself
		if prev, ok := lastSeen[e.StreamID]; ok && !stale && e.OccurredAt.Sub(prev) >= silenceWorthNoting {
			summary += fmt.Sprintf(" (after %s of silence)", e.OccurredAt.Sub(prev).Round(time.Second))
		}
		lastSeen[e.StreamID] = e.OccurredAt
		out = append(out, TimelineEntry{Position: e.Position, OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt,
			RunID: e.StreamID, Type: e.Type, Actor: actorOf(e), Summary: summary, Data: e.Data})
	}
	return out, nil
}

// runTotals returns each run's total calls: from its RunStarted when the
// events hold it, else (a run started before the range) from the write-side
// snapshots, in one query for all such runs.
func runTotals(ctx context.Context, store *eventstore.Store, events []eventstore.Recorded) (map[uuid.UUID]int, error) {
	totals := map[uuid.UUID]int{}
	var missing []uuid.UUID
	for _, e := range events {
		if start, ok := e.Event.(domain.RunStarted); ok {
			totals[e.StreamID] = start.TotalCalls
		}
	}
	seen := map[uuid.UUID]bool{}
	for _, e := range events {
		if _, ok := totals[e.StreamID]; !ok && !seen[e.StreamID] {
			seen[e.StreamID] = true
			missing = append(missing, e.StreamID)
		}
	}
	if len(missing) == 0 {
		return totals, nil
	}
	runs, err := store.LoadRuns(ctx, missing)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		totals[r.ID] = r.TotalCalls
	}
	return totals, nil
}

func actorOf(e eventstore.Recorded) string {
	if e.Metadata.Actor != "" {
		return e.Metadata.Actor
	}
	return "-"
}

func summarize(ev domain.Event, total int) string {
	switch e := ev.(type) {
	case domain.RunStarted:
		return fmt.Sprintf("started by worker %s: %d calls", e.WorkerID, e.TotalCalls)
	case domain.Heartbeat:
		s := progress(e.CompletedCalls, e.FailedCalls, total)
		if e.CancelDelivered {
			s += "; worker told to stop"
		}
		return s
	case domain.CancelRequested:
		who := e.RequestedBy
		if who == "" {
			who = "unknown"
		}
		s := "cancel requested by " + who
		if e.Forced {
			s = fmt.Sprintf("forced cancel by %s: run silent for %s", who, e.SilentFor)
		}
		if e.Reason != "" {
			s += fmt.Sprintf(" (reason: %q)", e.Reason)
		}
		return s
	case domain.RunCompleted:
		s := fmt.Sprintf("ended %s by worker: %s", e.Outcome, progress(e.CompletedCalls, e.FailedCalls, total))
		if e.Error != "" {
			s += fmt.Sprintf(" (error: %q)", e.Error)
		}
		return s
	case domain.RunStaleFailed:
		silent := e.DetectedAt.Sub(e.LastHeartbeatAt).Round(time.Second)
		end := "failed (stale)"
		if e.CancelRequested {
			end = "cancelled (stopped after the cancel request)"
		}
		by := e.DetectedBy
		if by == "" {
			by = "reaper"
		}
		return fmt.Sprintf("ended %s: silent for %s (TTL %s), %d calls abandoned; detected by %s",
			end, silent, e.StaleAfter, e.AbandonedCalls, by)
	}
	return ""
}

func progress(completed, failed, total int) string {
	return fmt.Sprintf("%d/%d done, %d failed, %d pending", completed, total, failed, total-completed-failed)
}

// WriteTimeline prints entries one per line: time, run, event, actor, facts.
func WriteTimeline(w io.Writer, entries []TimelineEntry) error {
	for _, e := range entries {
		if _, err := fmt.Fprintf(w, "%s  run %s  %-15s  %-22s  %s\n", e.OccurredAt.UTC().Format("2006-01-02T15:04:05.000Z"),
			e.RunID.String()[:8], e.Type, e.Actor, e.Summary); err != nil {
			return err
		}
	}
	return nil
}

// ReplayResult is a business's state replayed to an instant: what
// GET …/runs/active would have answered then, and why.
type ReplayResult struct {
	BusinessID string      `json:"business_id"`
	At         time.Time   `json:"at"`
	StaleAfter string      `json:"stale_after"`
	Status     int         `json:"answer_status"`
	Active     bool        `json:"active"`
	Reason     string      `json:"reason"`
	Run        *domain.Run `json:"run"`
	Events     int         `json:"events_folded"`
}

// Replay folds the events of the business's last run started at or before
// at, up to at, and judges it with the TTL as the API does. Only that run
// can have been active at at: a start ends or refuses any open run first.
func Replay(ctx context.Context, store *eventstore.Store, businessID string, at time.Time, ttl time.Duration) (ReplayResult, error) {
	// The log keeps microseconds: judge the instant at the log's precision, so
	// the run lookup and the fold below agree on which events happened by then.
	at = at.UTC().Truncate(time.Microsecond)
	res := ReplayResult{BusinessID: businessID, At: at.UTC(), StaleAfter: ttl.String(), Status: 404}
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
		run = domain.Evolve(run, e.Event)
	}
	res.Run, res.Events = &run, len(events)
	short := runID.String()[:8]
	switch {
	case run.Ended():
		res.Reason = fmt.Sprintf("run %s had ended at %s (%s, %s): 404 no_active_run", short,
			run.EndedAt.UTC().Format(time.RFC3339), run.Status, run.EndReason)
	case !run.Active(at, ttl):
		res.Reason = fmt.Sprintf("run %s silent for %s at that instant (TTL %s): not active, 404 no_active_run", short,
			run.SilentFor(at).Round(time.Second), ttl)
	default:
		res.Status, res.Active = 200, true
		res.Reason = fmt.Sprintf("run %s last sign of life %s earlier (TTL %s), %s: active, 200", short,
			run.SilentFor(at).Round(time.Second), ttl, progress(run.CompletedCalls, run.FailedCalls, run.TotalCalls))
	}
	return res, nil
}

// WriteReplay prints a replay result for people.
func WriteReplay(w io.Writer, r ReplayResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "business %s at %s (TTL %s)\n", r.BusinessID, r.At.Format(time.RFC3339Nano), r.StaleAfter)
	fmt.Fprintf(&b, "GET /v1/businesses/%s/runs/active would have answered %d\n", r.BusinessID, r.Status)
	fmt.Fprintf(&b, "why: %s\n", r.Reason)
	if r.Run != nil {
		fmt.Fprintf(&b, "run %s: status %s, cancel requested %v, %s, last sign of life %s, version %d (%d events folded)\n",
			r.Run.ID, r.Run.Status, r.Run.CancelRequested, progress(r.Run.CompletedCalls, r.Run.FailedCalls, r.Run.TotalCalls),
			r.Run.LastHeartbeatAt.UTC().Format(time.RFC3339), r.Run.Version, r.Events)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
