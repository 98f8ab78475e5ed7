package audit

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

// Timeline returns the events selected by q, explained. Runs whose start
// lies before q's range are described with their write-side state for the
// totals; a stall is noted on the heartbeats of runs whose start is in range
// (the timeline then knows their whole progress).
func Timeline(ctx context.Context, store *eventstore.Store, q eventstore.BusinessQuery, policy domain.Policy) ([]TimelineEntry, error) {
	events, err := store.ReadBusiness(ctx, q)
	if err != nil {
		return nil, err
	}
	totals, err := runTotals(ctx, store, events)
	if err != nil {
		return nil, err
	}
	lastSeen := map[uuid.UUID]time.Time{}
	states := map[uuid.UUID]domain.Run{} // runs followed from their start
	out := make([]TimelineEntry, 0, len(events))
	for _, e := range events {
		summary := summarize(e.Event, totals[e.StreamID])
		_, stale := e.Event.(domain.RunStaleFailed) // says how long it was silent itself
		if prev, ok := lastSeen[e.StreamID]; ok && !stale && e.OccurredAt.Sub(prev) >= silenceWorthNoting {
			summary += fmt.Sprintf(" (after %s of silence)", e.OccurredAt.Sub(prev).Round(time.Second))
		}
		lastSeen[e.StreamID] = e.OccurredAt
		if run, ok := states[e.StreamID]; ok || e.Type == domain.TypeRunStarted {
			run = domain.Evolve(run, e.Event)
			states[e.StreamID] = run
			if _, hb := e.Event.(domain.Heartbeat); hb && policy.Stalled(run, e.OccurredAt) {
				summary += fmt.Sprintf("; stalled since %s (no progress for %s)",
					policy.StalledSince(run).UTC().Format(timeFormat), e.OccurredAt.Sub(run.ProgressAt()).Round(time.Second))
			}
		}
		out = append(out, TimelineEntry{Position: e.Position, OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt,
			RunID: e.StreamID, Type: e.Type, Actor: actorOf(e), Summary: summary, Data: e.Data})
	}
	return out, nil
}

// timeFormat is how the audit prints instants.
const timeFormat = "2006-01-02T15:04:05.000Z"

// runTotals returns each run's total calls: from its RunStarted when the
// events hold it, else (a run started before the range) from the write-side
// snapshots, in one query for all such runs.
func runTotals(ctx context.Context, store *eventstore.Store, events []eventstore.Recorded) (map[uuid.UUID]int, error) {
	totals := map[uuid.UUID]int{}
	for _, e := range events {
		if start, ok := e.Event.(domain.RunStarted); ok {
			totals[e.StreamID] = start.TotalCalls
		}
	}
	var missing []uuid.UUID
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
		s := fmt.Sprintf("started by worker %s: %d calls", e.WorkerID, e.TotalCalls)
		if e.StaleAfter > 0 {
			s += fmt.Sprintf(" (TTL %s, stall after %s)", e.StaleAfter, e.StallAfter)
		}
		return s
	case domain.Heartbeat:
		s := progress(e.CompletedCalls, e.FailedCalls, total)
		if e.CancelDelivered {
			s += "; worker told to stop"
		}
		return s
	case domain.CancelRequested:
		s := "cancel requested by " + orUnknown(e.RequestedBy)
		if e.Forced {
			s = fmt.Sprintf("forced cancel by %s: run silent for %s", orUnknown(e.RequestedBy), e.SilentFor)
		}
		return s + reason(e.Reason)
	case domain.PauseRequested:
		return "paused by " + orUnknown(e.RequestedBy) + reason(e.Reason)
	case domain.RunResumed:
		return "resumed by " + orUnknown(e.RequestedBy) + reason(e.Reason)
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

func orUnknown(who string) string {
	if who == "" {
		return "unknown"
	}
	return who
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return fmt.Sprintf(" (reason: %q)", r)
}

func progress(completed, failed, total int) string {
	return fmt.Sprintf("%d/%d done, %d failed, %d pending", completed, total, failed, total-completed-failed)
}

// WriteTimeline prints the runs of entries with their full ids, then one
// line per event: time, run (its short form, unique in this output), event,
// actor, facts.
func WriteTimeline(w io.Writer, entries []TimelineEntry) error {
	var ids []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, e := range entries {
		if !seen[e.RunID] {
			seen[e.RunID] = true
			ids = append(ids, e.RunID)
		}
	}
	short := ShortIDs(ids)
	var b strings.Builder
	if len(ids) > 0 {
		b.WriteString("runs:\n")
		for _, id := range ids {
			fmt.Fprintf(&b, "  %-12s %s\n", short[id], id)
		}
		b.WriteString("\n")
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "%s  run %-12s  %-15s  %-22s  %s\n", e.OccurredAt.UTC().Format(timeFormat),
			short[e.RunID], e.Type, e.Actor, e.Summary)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
