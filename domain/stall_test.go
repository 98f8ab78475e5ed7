package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
)

// step is a command applied at t0+at.
type step struct {
	at  time.Duration
	cmd domain.Command
}

// beats returns heartbeats every minute from from to to (inclusive) that all
// report the same progress.
func beats(from, to time.Duration, completed int) []step {
	var out []step
	for at := from; at <= to; at += time.Minute {
		out = append(out, step{at, domain.RecordHeartbeat{CompletedCalls: completed}})
	}
	return out
}

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (h *harness) play(steps []step) {
	h.t.Helper()
	for _, s := range steps {
		h.clock.now = t0.Add(s.at)
		h.mustDo(s.cmd)
	}
}

func TestStall(t *testing.T) {
	m := time.Minute
	cases := []struct {
		name    string
		start   domain.StartRun
		steps   []step
		at      time.Duration // judged at t0+at
		stalled bool
		since   time.Duration // StalledSince - t0
	}{
		{"heartbeats without progress for stall_after: stalled", domain.StartRun{},
			concat([]step{{m, domain.RecordHeartbeat{CompletedCalls: 2}}}, beats(2*m, 11*m, 2)), 11 * m, true, 11 * m},
		{"heartbeats without progress for 1s less: not stalled", domain.StartRun{},
			concat([]step{{m, domain.RecordHeartbeat{CompletedCalls: 2}}}, beats(2*m, 10*m, 2)), 11*m - time.Second, false, 11 * m},
		{"no stall while paused", domain.StartRun{},
			concat([]step{{m, domain.RecordHeartbeat{CompletedCalls: 2}}, {2 * m, domain.PauseRun{}}}, beats(3*m, 40*m, 2)),
			40 * m, false, 11 * m},
		{"progress clears it", domain.StartRun{},
			concat([]step{{m, domain.RecordHeartbeat{CompletedCalls: 2}}}, beats(2*m, 11*m, 2),
				[]step{{11*m + 2*time.Second, domain.RecordHeartbeat{CompletedCalls: 3}}}),
			11*m + 2*time.Second, false, 21*m + 2*time.Second},
		{"resume restarts the stall clock: not stalled yet", domain.StartRun{},
			concat([]step{{m, domain.RecordHeartbeat{CompletedCalls: 2}}, {2 * m, domain.PauseRun{}}}, beats(3*m, 40*m, 2),
				[]step{{40*m + time.Second, domain.ResumeRun{}}}, beats(41*m, 50*m, 2)),
			50 * m, false, 50*m + time.Second},
		{"resume restarts the stall clock: stalled stall_after after the resume", domain.StartRun{},
			concat([]step{{m, domain.RecordHeartbeat{CompletedCalls: 2}}, {2 * m, domain.PauseRun{}}}, beats(3*m, 40*m, 2),
				[]step{{40*m + time.Second, domain.ResumeRun{}}}, beats(41*m, 50*m, 2)),
			50*m + time.Second, true, 50*m + time.Second},
		{"the run's own stall_after (2m)", domain.StartRun{StallAfter: 2 * m}, beats(m, 2*m, 0), 2 * m, true, 2 * m},
		{"a silent run is not stalled, only stale", domain.StartRun{}, nil, 15 * m, false, 10 * m},
		{"a run silent within its TTL is stalled", domain.StartRun{}, nil, 14 * m, true, 10 * m},
		{"an ended run is not stalled", domain.StartRun{},
			[]step{{m, domain.CompleteRun{Outcome: domain.OutcomeFailed}}}, 30 * m, false, 10 * m},
		{"failures count as progress", domain.StartRun{},
			concat(beats(m, 9*m, 0), []step{{10 * m, domain.RecordHeartbeat{FailedCalls: 1}}}), 10 * m, false, 20 * m},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.start.TotalCalls = 10
			h := startHarness(t, domain.DefaultPolicy(), tc.start)
			h.play(tc.steps)
			now := t0.Add(tc.at)
			if got := h.policy.Stalled(h.run, now); got != tc.stalled {
				t.Fatalf("Stalled at +%s = %v, want %v (last progress %v)", tc.at, got, tc.stalled, h.run.LastProgressAt)
			}
			if got, want := h.policy.StalledSince(h.run), t0.Add(tc.since); !got.Equal(want) {
				t.Fatalf("StalledSince = +%s, want +%s", got.Sub(t0), tc.since)
			}
		})
	}
}

// A stall is a flag, never an ending: the reaper refuses a stalled run whose
// worker still heartbeats.
func TestStallNeverEndsARun(t *testing.T) {
	h := newHarness(t, 10)
	h.play(beats(time.Minute, 30*time.Minute, 0))
	if !h.policy.Stalled(h.run, h.clock.now) {
		t.Fatal("run without progress for 30m is not stalled")
	}
	if _, err := h.do(domain.FailStale{DetectedBy: "reaper"}); !errors.Is(err, domain.ErrNotStale) {
		t.Fatalf("FailStale on a stalled live run: %v, want ErrNotStale", err)
	}
	if h.run.Ended() {
		t.Fatalf("stalled run ended %s/%s", h.run.Status, h.run.EndReason)
	}
}

// A heartbeat with progress while the run is stalled is stored even within
// the minimum interval, so the flag clears at once; the rest of coalescing
// stays.
func TestHeartbeatCoalescingWhenStalled(t *testing.T) {
	cases := []struct {
		name      string
		steps     []step
		completed int
		stored    bool
	}{
		{"progress while stalled: stored within the interval", beats(time.Minute, 10*time.Minute, 0), 1, true},
		{"no progress while stalled: coalesced", beats(time.Minute, 10*time.Minute, 0), 0, false},
		{"progress while not stalled: coalesced", beats(time.Minute, 9*time.Minute, 0), 1, false},
		{"progress while paused: coalesced", concat([]step{{0, domain.PauseRun{}}}, beats(time.Minute, 10*time.Minute, 0)), 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			h.play(tc.steps)
			h.clock.advance(2 * time.Second) // within the 5s minimum interval of the last stored heartbeat
			evs := h.mustDo(domain.RecordHeartbeat{CompletedCalls: tc.completed})
			if stored := len(evs) == 1; stored != tc.stored {
				t.Fatalf("stored = %v, want %v", stored, tc.stored)
			}
			if tc.stored && h.policy.Stalled(h.run, h.clock.now) {
				t.Fatal("still stalled after a stored heartbeat with progress")
			}
		})
	}
}

// A state decoded from a snapshot written before LastProgressAt existed
// counts its stall clock from the start.
func TestStallOfAStateWithoutLastProgressAt(t *testing.T) {
	h := newHarness(t, 10)
	h.play(beats(time.Minute, 9*time.Minute, 0))
	legacy := h.run
	legacy.LastProgressAt = time.Time{}
	if got := legacy.ProgressAt(); !got.Equal(t0) {
		t.Fatalf("ProgressAt = %v, want the start %v", got, t0)
	}
	if h.policy.Stalled(legacy, t0.Add(10*time.Minute-time.Second)) || !h.policy.Stalled(legacy, t0.Add(10*time.Minute)) {
		t.Fatal("a state without LastProgressAt must stall stall_after after its start")
	}
}
