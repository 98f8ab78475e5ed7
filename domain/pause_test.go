package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
)

// The seed's two pause rows: a paused run is cancelled gracefully while its
// last sign of life is within the TTL, and at once past it.
func TestCancelPausedRun(t *testing.T) {
	cases := []struct {
		name       string
		lastLife   time.Duration // how long before the cancel the last sign of life was
		wantTypes  []string
		wantStatus domain.Status
		wantReason domain.EndReason
	}{
		{"paused, last sign of life 10 min ago: graceful", 10 * time.Minute,
			[]string{domain.TypeCancelRequested}, domain.StatusRunning, ""},
		{"paused, last sign of life 60 min ago: forced", 60 * time.Minute,
			[]string{domain.TypeCancelRequested, domain.TypeRunCompleted}, domain.StatusCancelled, domain.EndCancelForced},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			h.clock.advance(time.Minute)
			h.mustDo(domain.RecordHeartbeat{CompletedCalls: 2}) // the last sign of life
			h.clock.advance(time.Minute)
			h.mustDo(domain.PauseRun{Reason: "lunch", RequestedBy: "user:alice"})
			h.clock.advance(tc.lastLife - time.Minute)
			if !h.run.Paused || h.run.SilentFor(h.clock.now) != tc.lastLife {
				t.Fatalf("before cancel: paused=%v silent %s, want paused, silent %s", h.run.Paused, h.run.SilentFor(h.clock.now), tc.lastLife)
			}
			evs := h.mustDo(domain.RequestCancel{Reason: "stop", RequestedBy: "user:alice"})
			if got := types(evs); !equal(got, tc.wantTypes) {
				t.Fatalf("events = %v, want %v", got, tc.wantTypes)
			}
			if h.run.Status != tc.wantStatus || h.run.EndReason != tc.wantReason || !h.run.CancelRequested {
				t.Fatalf("state = %s/%s cancel=%v, want %s/%s cancel=true", h.run.Status, h.run.EndReason,
					h.run.CancelRequested, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

// The worker learns of a pause from its heartbeat's answer (pause_requested
// is state.Paused after the heartbeat) and of the resume the same way.
func TestPauseAndResumeReachTheWorkerThroughHeartbeats(t *testing.T) {
	h := newHarness(t, 10)
	h.clock.advance(time.Minute)
	if evs := h.mustDo(domain.PauseRun{Reason: "lunch", RequestedBy: "user:alice"}); !equal(types(evs), []string{domain.TypePauseRequested}) {
		t.Fatalf("pause appended %v", types(evs))
	}
	h.clock.advance(time.Minute)
	h.mustDo(domain.RecordHeartbeat{CompletedCalls: 1})
	if !h.run.Paused || !h.run.PausedAt.Equal(t0.Add(time.Minute)) || h.run.PauseReason != "lunch" || h.run.PausedBy != "user:alice" {
		t.Fatalf("heartbeat after pause: paused=%v at %v reason %q by %q", h.run.Paused, h.run.PausedAt, h.run.PauseReason, h.run.PausedBy)
	}
	h.clock.advance(time.Minute)
	if evs := h.mustDo(domain.ResumeRun{RequestedBy: "user:bob"}); !equal(types(evs), []string{domain.TypeRunResumed}) {
		t.Fatalf("resume appended %v", types(evs))
	}
	h.clock.advance(time.Minute)
	h.mustDo(domain.RecordHeartbeat{CompletedCalls: 2})
	if h.run.Paused || !h.run.PausedAt.IsZero() || h.run.PauseReason != "" || h.run.PausedBy != "" {
		t.Fatalf("heartbeat after resume: paused=%v at %v reason %q by %q, want all cleared", h.run.Paused, h.run.PausedAt, h.run.PauseReason, h.run.PausedBy)
	}
	if h.run.CompletedCalls != 2 || !h.run.Active(h.clock.now, h.policy.StaleAfter) {
		t.Fatalf("after resume: completed %d active %v", h.run.CompletedCalls, h.run.Active(h.clock.now, h.policy.StaleAfter))
	}
}

func TestPausedRunSilentPastTTL(t *testing.T) {
	cases := []struct {
		name       string
		cancel     bool
		wantStatus domain.Status
		wantReason domain.EndReason
	}{
		{"paused run silent past its TTL: reaped stale", false, domain.StatusFailed, domain.EndStale},
		{"cancel-requested paused run silent: ends cancelled", true, domain.StatusCancelled, domain.EndCancelled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			h.clock.advance(time.Minute)
			h.mustDo(domain.RecordHeartbeat{CompletedCalls: 3})
			h.mustDo(domain.PauseRun{})
			if tc.cancel {
				h.clock.advance(time.Minute)
				h.mustDo(domain.RequestCancel{Reason: "never mind"})
			}
			h.clock.now = h.run.LastHeartbeatAt.Add(14 * time.Minute)
			if _, err := h.do(domain.FailStale{DetectedBy: "reaper"}); !errors.Is(err, domain.ErrNotStale) {
				t.Fatalf("FailStale 14m after the last heartbeat: %v, want ErrNotStale", err)
			}
			now := h.clock.advance(time.Minute)
			if h.run.Active(now, h.policy.StaleAfter) {
				t.Fatalf("paused run silent for %s is active", h.run.SilentFor(now))
			}
			evs := h.mustDo(domain.FailStale{DetectedBy: "reaper"})
			sf := evs[0].(domain.RunStaleFailed)
			if sf.AbandonedCalls != 7 || sf.CancelRequested != tc.cancel || time.Duration(sf.StaleAfter) != 15*time.Minute {
				t.Fatalf("RunStaleFailed = %+v", sf)
			}
			if h.run.Status != tc.wantStatus || h.run.EndReason != tc.wantReason {
				t.Fatalf("ended %s/%s, want %s/%s", h.run.Status, h.run.EndReason, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

// A paused run is judged by the same liveness rule: active while its worker
// heartbeats; pausing and resuming are not signs of life.
func TestPausedRunIsActiveWhileItsWorkerHeartbeats(t *testing.T) {
	h := newHarness(t, 10)
	h.clock.advance(10 * time.Minute)
	h.mustDo(domain.PauseRun{})
	if !h.run.LastHeartbeatAt.Equal(t0) {
		t.Fatalf("pause moved the last sign of life to %v", h.run.LastHeartbeatAt)
	}
	h.clock.advance(4 * time.Minute)
	h.mustDo(domain.RecordHeartbeat{})
	for range 6 { // an hour of paused heartbeats
		now := h.clock.advance(10 * time.Minute)
		if !h.run.Active(now, h.policy.StaleAfter) {
			t.Fatalf("heartbeating paused run inactive at %v", now)
		}
		h.mustDo(domain.RecordHeartbeat{})
	}
	last := h.run.LastHeartbeatAt
	h.clock.advance(time.Minute)
	h.mustDo(domain.ResumeRun{})
	if !h.run.LastHeartbeatAt.Equal(last) {
		t.Fatalf("resume moved the last sign of life from %v to %v", last, h.run.LastHeartbeatAt)
	}
}

func TestPauseAndResumeRules(t *testing.T) {
	cases := []struct {
		name    string
		before  []domain.Command
		cmd     domain.Command
		want    []string
		paused  bool
		pauseBy string
	}{
		{"pause a running run", nil, domain.PauseRun{Reason: "r", RequestedBy: "user:a"},
			[]string{domain.TypePauseRequested}, true, "user:a"},
		{"pause while paused: acknowledged, nothing stored", []domain.Command{domain.PauseRun{RequestedBy: "user:a"}},
			domain.PauseRun{Reason: "again", RequestedBy: "user:b"}, nil, true, "user:a"},
		{"resume a paused run", []domain.Command{domain.PauseRun{RequestedBy: "user:a"}}, domain.ResumeRun{RequestedBy: "user:b"},
			[]string{domain.TypeRunResumed}, false, ""},
		{"resume a run not paused: acknowledged, nothing stored", nil, domain.ResumeRun{}, nil, false, ""},
		{"resume twice: the second stores nothing", []domain.Command{domain.PauseRun{}, domain.ResumeRun{}}, domain.ResumeRun{}, nil, false, ""},
		{"pause a run whose cancel was requested: acknowledged, nothing stored", []domain.Command{domain.RequestCancel{}},
			domain.PauseRun{RequestedBy: "user:a"}, nil, false, ""},
		{"resume a paused run whose cancel was then requested", []domain.Command{domain.PauseRun{RequestedBy: "user:a"}, domain.RequestCancel{}},
			domain.ResumeRun{}, []string{domain.TypeRunResumed}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			for _, c := range tc.before {
				h.clock.advance(time.Minute)
				h.mustDo(c)
			}
			h.clock.advance(time.Minute)
			if got := types(h.mustDo(tc.cmd)); !equal(got, tc.want) {
				t.Fatalf("events = %v, want %v", got, tc.want)
			}
			if h.run.Paused != tc.paused || h.run.PausedBy != tc.pauseBy {
				t.Fatalf("paused=%v by %q, want %v by %q", h.run.Paused, h.run.PausedBy, tc.paused, tc.pauseBy)
			}
		})
	}
}

func TestPauseReasonValidation(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		want   string // the reason of the refusal; "" when accepted
	}{
		{"empty", "", ""},
		{"500 bytes", strings.Repeat("x", 500), ""},
		{"501 bytes", strings.Repeat("x", 501), "must be at most 500 bytes"},
		{"invalid UTF-8", "lunch\xff", "must be valid UTF-8"},
		{"NUL", "lunch\x00", "must not contain NUL characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			before := h.run
			evs, err := h.do(domain.PauseRun{Reason: tc.reason})
			if tc.want == "" {
				if err != nil || len(evs) != 1 || evs[0].(domain.PauseRequested).Reason != tc.reason {
					t.Fatalf("got %v, %v; want a PauseRequested with the reason", types(evs), err)
				}
				return
			}
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || ve.Fields[0].Field != "reason" || ve.Fields[0].Reason != tc.want {
				t.Fatalf("got %v, %v; want a validation error on reason: %s", types(evs), err, tc.want)
			}
			if h.run != before {
				t.Fatalf("refused pause changed the state")
			}
		})
	}
}

func TestResumeReasonIsValidated(t *testing.T) {
	h := newHarness(t, 10)
	h.mustDo(domain.PauseRun{Reason: "lunch"})
	if _, err := h.do(domain.ResumeRun{Reason: "back\x00"}); !errors.Is(err, domain.ErrValidation) {
		t.Fatalf("resume with a NUL reason: %v, want a validation error", err)
	}
	evs := h.mustDo(domain.ResumeRun{Reason: "back from lunch", RequestedBy: "user:bob"})
	if len(evs) != 1 || evs[0].(domain.RunResumed).Reason != "back from lunch" || h.run.Paused {
		t.Fatalf("resume = %+v, paused=%v", evs, h.run.Paused)
	}
}
