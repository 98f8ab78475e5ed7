package domain_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// compactPolicy is the service policy the generated runs fall back to; most
// runs set their own TTL and stall threshold.
var compactPolicy = domain.Policy{StaleAfter: 2 * time.Minute, HeartbeatMinInterval: time.Second, StallAfter: 90 * time.Second}

// genHistory plays random commands through Decide, the way the service
// writes a run: heartbeats with gaps around the TTL (just under, exactly,
// just over, far over), progress that stops for stretches (stalls), pauses
// and resumes, cancels (graceful and forced), and every way a run ends. Times
// are at the log's precision (microseconds).
func genHistory(rng *rand.Rand) []domain.Event {
	p := compactPolicy
	start := domain.StartRun{RunID: uuid.New(), BusinessID: "b", WorkerID: "w", TotalCalls: 1000}
	if rng.IntN(4) > 0 {
		start.StaleAfter = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute}[rng.IntN(3)]
		start.StallAfter = []time.Duration{time.Minute, 90 * time.Second, 3 * time.Minute}[rng.IntN(3)]
	}
	now := t0
	var (
		run    domain.Run
		events []domain.Event
	)
	do := func(c domain.Command) {
		evs, err := p.Decide(run, c, now)
		if err != nil {
			return
		}
		for _, e := range evs {
			run = domain.Evolve(run, e)
			events = append(events, e)
		}
	}
	do(start)
	ttl, stall := p.StaleAfterFor(run), p.StallAfterFor(run)
	done := 0
	progressing := true
	for steps := 10 + rng.IntN(120); steps > 0 && !run.Ended(); steps-- {
		var gap time.Duration
		switch rng.IntN(10) {
		case 0:
			gap = ttl - time.Microsecond
		case 1:
			gap = ttl
		case 2:
			gap = ttl + time.Microsecond
		case 3:
			gap = ttl + time.Duration(rng.Int64N(int64(ttl)))
		case 4:
			gap = stall + time.Duration(rng.Int64N(3))*time.Microsecond - time.Microsecond
		default:
			gap = time.Duration(rng.Int64N(int64(ttl / 3)))
		}
		now = now.Add(gap).Truncate(time.Microsecond)
		if rng.IntN(8) == 0 {
			progressing = !progressing
		}
		switch r := rng.IntN(40); {
		case r == 0:
			do(domain.PauseRun{Reason: "lunch"})
		case r == 1:
			do(domain.ResumeRun{})
		case r == 2:
			do(domain.RequestCancel{Reason: "stop"})
		case r == 3 && steps%3 == 0:
			do(domain.FailStale{})
		default:
			if progressing && done < 1000 {
				done += 1 + rng.IntN(5)
				done = min(done, 1000)
			}
			do(domain.RecordHeartbeat{CompletedCalls: done})
		}
	}
	now = now.Add(time.Duration(rng.Int64N(int64(2 * ttl)))).Truncate(time.Microsecond)
	switch rng.IntN(4) {
	case 0:
		do(domain.FailStale{})
	case 1:
		do(domain.RequestCancel{Reason: "enough"})
	}
	if !run.Ended() {
		outcome := []domain.Outcome{domain.OutcomeCompleted, domain.OutcomeFailed, domain.OutcomeCancelled}[rng.IntN(3)]
		do(domain.CompleteRun{Outcome: outcome, CompletedCalls: done})
	}
	return events
}

// answersDiffer returns the first instant at which the replay answers of a
// and b differ, checking every event instant, 1 µs either side of it, the
// instants a TTL or stall threshold after each (and 1 µs either side), and
// random instants; ok is false when they never differ.
func answersDiffer(rng *rand.Rand, a, b []domain.Event) (at time.Time, wa, wb domain.Answer, ok bool) {
	ra := domain.Evolve(domain.Run{}, a[0])
	ttl, stall := compactPolicy.StaleAfterFor(ra), compactPolicy.StallAfterFor(ra)
	var instants []time.Time
	for _, e := range a {
		for _, base := range []time.Time{e.When(), e.When().Add(ttl), e.When().Add(stall)} {
			instants = append(instants, base.Add(-time.Microsecond), base, base.Add(time.Microsecond))
		}
	}
	first, last := a[0].When(), a[len(a)-1].When().Add(ttl)
	for range 200 {
		instants = append(instants, first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)+1)))).Truncate(time.Microsecond))
	}
	for _, t := range instants {
		x, y := answerAt(a, t), answerAt(b, t)
		if x != y {
			return t, x, y, true
		}
	}
	return time.Time{}, domain.Answer{}, domain.Answer{}, false
}

// answerAt folds the events that occurred at or before t (the replay's
// "through t") and judges the result.
func answerAt(events []domain.Event, t time.Time) domain.Answer {
	var r domain.Run
	for _, e := range events {
		if e.When().After(t) {
			break
		}
		r = domain.Evolve(r, e)
	}
	return compactPolicy.AnswerAt(r, t)
}

func kept(events []domain.Event, keep []bool) []domain.Event {
	var out []domain.Event
	for i, e := range events {
		if keep[i] {
			out = append(out, e)
		}
	}
	return out
}

func heartbeats(events []domain.Event) int {
	n := 0
	for _, e := range events {
		if e.EventType() == domain.TypeHeartbeat {
			n++
		}
	}
	return n
}

// TestCompactPreservesEveryAnswer is the property: over generated histories,
// the compacted stream answers exactly as the whole one at every instant, its
// final state is the same (so a rebuild of the read models is unchanged), and
// it keeps every non-heartbeat and the last heartbeat.
func TestCompactPreservesEveryAnswer(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 23))
	var before, after, mutated, caught int
	for i := range 500 {
		events := genHistory(rng)
		keep := compactPolicy.Compact(events)
		out := kept(events, keep)
		if at, x, y, differ := answersDiffer(rng, events, out); differ {
			t.Fatalf("history %d (%d events, %d kept): at %s the whole log answers\n%+v\nthe compacted one\n%+v\n%s",
				i, len(events), len(out), at.Format(time.RFC3339Nano), x, y, dump(events, keep))
		}
		for j, e := range events {
			if e.EventType() != domain.TypeHeartbeat && !keep[j] {
				t.Fatalf("history %d: event %d (%s) dropped", i, j, e.EventType())
			}
		}
		if last := lastHeartbeat(events); last >= 0 && !keep[last] {
			t.Fatalf("history %d: the last heartbeat (event %d) dropped", i, last)
		}
		if f, g := fold(events), fold(out); !sameFinal(f, g) {
			t.Fatalf("history %d: final state differs:\n%+v\n%+v", i, f, g)
		}
		before += heartbeats(events)
		after += heartbeats(out)

		// The check can fail: drop one kept heartbeat the rule did not keep
		// only for the final counts, and see whether some answer changes.
		if j := randomKeptHeartbeat(rng, events, keep); j >= 0 {
			mutated++
			keep[j] = false
			if _, _, _, differ := answersDiffer(rng, events, kept(events, keep)); differ {
				caught++
			}
		}
	}
	t.Logf("heartbeats kept: %d of %d (%.3f); dropping one kept heartbeat changed an answer in %d of %d histories",
		after, before, float64(after)/float64(before), caught, mutated)
	if caught == 0 {
		t.Fatalf("dropping a kept heartbeat never changed an answer: the check cannot fail")
	}
}

// TestCompactKeepsOpenRuns: a stream without its end is kept whole.
func TestCompactKeepsOpenRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		events := genHistory(rng)
		open := events[:len(events)-1]
		if domain.Terminal(open[len(open)-1]) { // a forced cancel ends with two events
			continue
		}
		if keep := compactPolicy.Compact(open); slices.Contains(keep, false) {
			t.Fatalf("an open run lost events: %v", keep)
		}
	}
}

// TestCompactLongSteadyRun is the common case: a worker heartbeating every
// 5 s with progress for 8 hours at the defaults (15m TTL, 10m stall). About
// one heartbeat in a hundred stays.
func TestCompactLongSteadyRun(t *testing.T) {
	p := domain.DefaultPolicy()
	now := t0
	events := []domain.Event{domain.RunStarted{RunID: uuid.New(), BusinessID: "b", WorkerID: "w", TotalCalls: 100000,
		StaleAfter: domain.Duration(p.StaleAfter), StallAfter: domain.Duration(p.StallAfter), OccurredAt: now}}
	done := 0
	for range 8 * 720 {
		now = now.Add(5 * time.Second)
		done += 3
		events = append(events, domain.Heartbeat{CompletedCalls: done, OccurredAt: now})
	}
	events = append(events, domain.RunCompleted{Outcome: domain.OutcomeCompleted, CompletedCalls: done, OccurredAt: now.Add(time.Second)})
	keep := p.Compact(events)
	out := kept(events, keep)
	ratio := float64(heartbeats(out)) / float64(heartbeats(events))
	// One every 10 min (the stall threshold; the TTL is covered by them), the
	// last at 8 h among them: 48.
	if got, want := heartbeats(out), 48; got != want {
		t.Fatalf("kept %d heartbeats of %d (%.4f); want %d", got, heartbeats(events), ratio, want)
	}
	if f, g := fold(events), fold(out); !sameFinal(f, g) {
		t.Fatalf("final state differs:\n%+v\n%+v", f, g)
	}
}

func lastHeartbeat(events []domain.Event) int {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].EventType() == domain.TypeHeartbeat {
			return i
		}
	}
	return -1
}

func fold(events []domain.Event) domain.Run {
	var r domain.Run
	for _, e := range events {
		r = domain.Evolve(r, e)
	}
	return r
}

// sameFinal compares final states but their versions: the log keeps each
// event's stream version, and the fold of a compacted stream takes it from
// there (a count of the kept events would be smaller).
func sameFinal(a, b domain.Run) bool {
	a.Version, b.Version = 0, 0
	return a == b
}

// randomKeptHeartbeat returns a heartbeat the rule kept, or -1.
func randomKeptHeartbeat(rng *rand.Rand, events []domain.Event, keep []bool) int {
	var idx []int
	for i, e := range events {
		if keep[i] && e.EventType() == domain.TypeHeartbeat {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return -1
	}
	return idx[rng.IntN(len(idx))]
}

func dump(events []domain.Event, keep []bool) string {
	var s string
	for i, e := range events {
		mark := "  "
		if keep[i] {
			mark = "K "
		}
		s += fmt.Sprintf("%s%3d %s %+v\n", mark, i, e.When().Sub(t0), e)
	}
	return s
}
