package domain

import "time"

// Answer is what a replay says of a run at an instant: whether it was
// active and why, whether it was paused, whether it was stalled and since
// when. It is what compaction must preserve at every instant. Progress
// counts and the age of the last sign of life of an active run are not part
// of it: those become coarser when heartbeats are removed.
type Answer struct {
	Exists    bool
	Active    bool
	Ended     bool
	Status    Status
	EndReason EndReason
	// SilentSince is the last sign of life of a running run that is not
	// active (the "silent for" of the answer); zero otherwise.
	SilentSince time.Time
	Paused      bool
	PausedAt    time.Time
	Stalled     bool
	// StalledSince is set only while Stalled.
	StalledSince    time.Time
	CancelRequested bool
	CancelDelivered bool
}

// AnswerAt returns the answer for r, the state folded from the events that
// occurred at or before at, judged by r's own policy (p for what r did not
// record).
func (p Policy) AnswerAt(r Run, at time.Time) Answer {
	a := Answer{Exists: r.Exists(), Ended: r.Ended(), Status: r.Status, EndReason: r.EndReason,
		Active: r.Active(at, p.StaleAfter), Paused: r.Paused, PausedAt: r.PausedAt,
		CancelRequested: r.CancelRequested, CancelDelivered: r.CancelDelivered}
	if a.Exists && !a.Ended && !a.Active {
		a.SilentSince = r.LastHeartbeatAt
	}
	if p.Stalled(r, at) {
		a.Stalled, a.StalledSince = true, p.StalledSince(r)
	}
	return a
}

// Compact returns, for one run's events in stream order, which to keep: the
// fewest heartbeats for which AnswerAt gives the same answer at every instant
// as the whole stream does. A stream that has not ended is kept whole (an
// open run is never compacted), and so is every event that is not a
// heartbeat. Of the heartbeats it keeps:
//   - the last one before the end (the final counts and last sign of life);
//   - the first that delivered a cancel request;
//   - for liveness, a heartbeat when the next sign of life lies more than the
//     run's TTL after the last one kept (greedy: each kept heartbeat covers
//     as far as it can, so every gap the reader sees is ≤ TTL exactly where
//     the original's was, and each silence starts at the same heartbeat);
//   - for stalls, the same over progress points (heartbeats whose counts
//     grew, the start, resumes, the end) with the run's stall threshold, so
//     a stall starts, ends and reports "stalled since" as before;
//   - for each kept heartbeat, the one that first reached its counts, so a
//     kept heartbeat never looks like progress it did not make.
//
// A heartbeat that occurred before an earlier event (a skewed replica) is
// kept: the rule reasons over times in order.
func (p Policy) Compact(events []Event) []bool {
	keep := make([]bool, len(events))
	n := len(events)
	if n == 0 || !Terminal(events[n-1]) {
		for i := range keep {
			keep[i] = true
		}
		return keep
	}
	var final Run
	for _, e := range events {
		final = Evolve(final, e)
	}
	ttl, stallAfter := p.StaleAfterFor(final), p.StallAfterFor(final)
	end := events[n-1].When()

	// What each event is: its sign-of-life and progress role, and the event
	// that first reached its counts.
	origin := make([]int, n)
	progress := make([]bool, n)
	lastHB := -1
	var (
		state    Run
		maxTime  time.Time
		curOrig  int
		deliverd bool
	)
	for i, e := range events {
		hb, isHB := e.(Heartbeat)
		switch {
		case !isHB:
			keep[i] = true
		case e.When().Before(maxTime):
			keep[i] = true
		case hb.CancelDelivered && !deliverd:
			keep[i] = true
			deliverd = true
		}
		if isHB {
			lastHB = i
			if hb.CompletedCalls+hb.FailedCalls > state.CompletedCalls+state.FailedCalls {
				progress[i], curOrig = true, i
			}
		}
		if _, ok := e.(RunStarted); ok {
			curOrig = i
		}
		origin[i] = curOrig
		state = Evolve(state, e)
		maxTime = later(maxTime, e.When())
	}
	if lastHB >= 0 {
		keep[lastHB] = true
	}

	// The next sign of life and the next progress point after each event (the
	// end when there is none: no answer after it depends on the run's clocks).
	nextLife, nextProgress := make([]time.Time, n), make([]time.Time, n)
	life, prog := end, end
	for i := n - 1; i >= 0; i-- {
		nextLife[i], nextProgress[i] = life, prog
		switch events[i].(type) {
		case Heartbeat:
			life = events[i].When()
			if progress[i] {
				prog = events[i].When()
			}
		case RunResumed:
			prog = events[i].When()
		}
	}

	// One pass, both greedy rules: lastLife and lastProgress are the latest
	// kept sign of life and progress point; a heartbeat is needed when the
	// next one of its kind lies beyond what the last kept one covers.
	var lastLife, lastProgress time.Time
	for i, e := range events {
		switch e.(type) {
		case RunStarted:
			lastLife, lastProgress = e.When(), e.When()
			continue
		case RunResumed:
			lastProgress = later(lastProgress, e.When())
			continue
		case Heartbeat:
		default:
			continue
		}
		if nextLife[i].After(lastLife.Add(ttl)) {
			keep[i] = true
		}
		if progress[i] && nextProgress[i].After(lastProgress.Add(stallAfter)) {
			keep[i] = true
		}
		if keep[i] {
			lastLife = later(lastLife, e.When())
			if progress[i] {
				lastProgress = later(lastProgress, e.When())
			}
		}
	}
	// A kept heartbeat must not look like progress it did not make: keep the
	// heartbeat that first reached its counts (earlier, so one backward pass).
	for i := n - 1; i >= 0; i-- {
		if _, ok := events[i].(Heartbeat); ok && keep[i] {
			keep[origin[i]] = true
		}
	}
	return keep
}
