package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// clock is a fake clock: tests move it, nothing sleeps.
type clock struct{ now time.Time }

func (c *clock) advance(d time.Duration) time.Time { c.now = c.now.Add(d); return c.now }

// harness applies commands to one run the way the application layer does.
type harness struct {
	t      *testing.T
	policy domain.Policy
	clock  *clock
	run    domain.Run
}

func newHarness(t *testing.T, total int) *harness {
	t.Helper()
	return startHarness(t, domain.DefaultPolicy(), domain.StartRun{TotalCalls: total})
}

// startHarness starts a run at t0 under the service policy p; start's empty
// RunID, BusinessID and WorkerID are filled in.
func startHarness(t *testing.T, p domain.Policy, start domain.StartRun) *harness {
	t.Helper()
	if start.RunID == uuid.Nil {
		start.RunID = uuid.New()
	}
	if start.BusinessID == "" {
		start.BusinessID = "biz-1"
	}
	if start.WorkerID == "" {
		start.WorkerID = "w1"
	}
	h := &harness{t: t, policy: p, clock: &clock{now: t0}}
	h.mustDo(start)
	return h
}

func (h *harness) do(cmd domain.Command) ([]domain.Event, error) {
	evs, err := h.policy.Decide(h.run, cmd, h.clock.now)
	if err == nil {
		for _, e := range evs {
			h.run = domain.Evolve(h.run, e)
		}
	}
	return evs, err
}

func (h *harness) mustDo(cmd domain.Command) []domain.Event {
	h.t.Helper()
	evs, err := h.do(cmd)
	if err != nil {
		h.t.Fatalf("%T: %v", cmd, err)
	}
	return evs
}

func TestActiveFollowsServerClockTTL(t *testing.T) {
	cases := []struct {
		name   string
		silent time.Duration
		active bool
	}{
		{"fresh", 0, true},
		{"silent 5m", 5 * time.Minute, true},
		{"silent 14m59s", 14*time.Minute + 59*time.Second, true},
		{"silent exactly 15m", 15 * time.Minute, false},
		{"silent 15m1s", 15*time.Minute + time.Second, false},
		{"silent 60m", time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			now := h.clock.advance(tc.silent)
			if got := h.run.Active(now, h.policy.StaleAfter); got != tc.active {
				t.Fatalf("Active after %s = %v, want %v", tc.silent, got, tc.active)
			}
			if got := h.run.Silent(now, h.policy.StaleAfter); got == tc.active {
				t.Fatalf("Silent after %s = %v, want %v", tc.silent, got, !tc.active)
			}
			if want := t0.Add(15 * time.Minute); !h.run.StaleAt(h.policy.StaleAfter).Equal(want) {
				t.Fatalf("StaleAt = %v, want %v", h.run.StaleAt(h.policy.StaleAfter), want)
			}
		})
	}
}

func TestHeartbeatKeepsRunAlive(t *testing.T) {
	h := newHarness(t, 10)
	h.clock.advance(14 * time.Minute)
	h.mustDo(domain.RecordHeartbeat{CompletedCalls: 3})
	now := h.clock.advance(14 * time.Minute)
	if !h.run.Active(now, h.policy.StaleAfter) {
		t.Fatalf("run silent 14m after a heartbeat must be active")
	}
	if h.run.CompletedCalls != 3 || h.run.PendingCalls() != 7 {
		t.Fatalf("progress = %d/%d pending, want 3/7", h.run.CompletedCalls, h.run.PendingCalls())
	}
}

func TestCancel(t *testing.T) {
	cases := []struct {
		name       string
		silent     time.Duration
		wantTypes  []string
		wantStatus domain.Status
		wantReason domain.EndReason
	}{
		{"fresh heartbeat: graceful", time.Minute, []string{domain.TypeCancelRequested}, domain.StatusRunning, ""},
		{"silent 14m: graceful", 14 * time.Minute, []string{domain.TypeCancelRequested}, domain.StatusRunning, ""},
		{"silent 20m: forced", 20 * time.Minute, []string{domain.TypeCancelRequested, domain.TypeRunCompleted},
			domain.StatusCancelled, domain.EndCancelForced},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			h.mustDo(domain.RecordHeartbeat{CompletedCalls: 1}) // too soon: coalesced
			h.clock.advance(tc.silent)
			evs := h.mustDo(domain.RequestCancel{Reason: "user pressed cancel", RequestedBy: "user:u1"})
			if got := types(evs); !equal(got, tc.wantTypes) {
				t.Fatalf("events = %v, want %v", got, tc.wantTypes)
			}
			if h.run.Status != tc.wantStatus || h.run.EndReason != tc.wantReason || !h.run.CancelRequested {
				t.Fatalf("state = %s/%s cancel=%v, want %s/%s cancel=true", h.run.Status, h.run.EndReason,
					h.run.CancelRequested, tc.wantStatus, tc.wantReason)
			}
			forced := evs[0].(domain.CancelRequested).Forced
			if forced != (len(tc.wantTypes) == 2) {
				t.Fatalf("CancelRequested.Forced = %v", forced)
			}
		})
	}
}

func TestRepeatedCancelIsHarmless(t *testing.T) {
	h := newHarness(t, 10)
	h.mustDo(domain.RequestCancel{})
	if evs := h.mustDo(domain.RequestCancel{}); len(evs) != 0 {
		t.Fatalf("second cancel appended %v", types(evs))
	}
}

func TestCancelIsDeliveredOnNextHeartbeatAndStored(t *testing.T) {
	h := newHarness(t, 10)
	h.mustDo(domain.RequestCancel{})
	evs := h.mustDo(domain.RecordHeartbeat{CompletedCalls: 1}) // within min interval, but carries news
	if len(evs) != 1 || !evs[0].(domain.Heartbeat).CancelDelivered {
		t.Fatalf("first heartbeat after cancel = %v, want a stored Heartbeat{CancelDelivered}", evs)
	}
	if evs := h.mustDo(domain.RecordHeartbeat{CompletedCalls: 2}); len(evs) != 0 {
		t.Fatalf("second heartbeat within interval stored %v", types(evs))
	}
	h.mustDo(domain.CompleteRun{Outcome: domain.OutcomeCancelled, CompletedCalls: 2})
	if h.run.Status != domain.StatusCancelled || h.run.EndReason != domain.EndCancelled {
		t.Fatalf("graceful cancel ended %s/%s", h.run.Status, h.run.EndReason)
	}
}

func TestHeartbeatCoalescing(t *testing.T) {
	h := newHarness(t, 100)
	stored := 0
	for i := 1; i <= 60; i++ { // one heartbeat a second for a minute
		h.clock.advance(time.Second)
		stored += len(h.mustDo(domain.RecordHeartbeat{CompletedCalls: i}))
	}
	if stored != 12 {
		t.Fatalf("stored %d heartbeats of 60 at 1/s with a 5s minimum interval, want 12", stored)
	}
	if h.run.SilentFor(h.clock.now) >= h.policy.HeartbeatMinInterval {
		t.Fatalf("coalescing left the run silent for %s", h.run.SilentFor(h.clock.now))
	}
}

func TestSilentCancelRequestedRunEndsCancelled(t *testing.T) {
	h := newHarness(t, 10)
	h.mustDo(domain.RequestCancel{})
	h.clock.advance(15*time.Minute + time.Second)
	evs := h.mustDo(domain.FailStale{DetectedBy: "reaper"})
	if len(evs) != 1 || evs[0].EventType() != domain.TypeRunStaleFailed {
		t.Fatalf("FailStale = %v", types(evs))
	}
	if h.run.Status != domain.StatusCancelled || h.run.EndReason != domain.EndCancelled {
		t.Fatalf("silent cancel-requested run ended %s/%s, want cancelled/cancelled", h.run.Status, h.run.EndReason)
	}
}

func TestFailStale(t *testing.T) {
	h := newHarness(t, 10)
	h.clock.advance(time.Minute)
	h.mustDo(domain.RecordHeartbeat{CompletedCalls: 2, FailedCalls: 1})
	h.clock.advance(14 * time.Minute)
	if _, err := h.do(domain.FailStale{}); !errors.Is(err, domain.ErrNotStale) {
		t.Fatalf("FailStale on a live run: %v, want ErrNotStale", err)
	}
	h.clock.advance(2 * time.Minute)
	evs := h.mustDo(domain.FailStale{})
	sf := evs[0].(domain.RunStaleFailed)
	if sf.AbandonedCalls != 7 || !sf.LastHeartbeatAt.Equal(t0.Add(time.Minute)) || time.Duration(sf.StaleAfter) != 15*time.Minute {
		t.Fatalf("RunStaleFailed = %+v", sf)
	}
	if h.run.Status != domain.StatusFailed || h.run.EndReason != domain.EndStale || h.run.AbandonedCalls != 7 {
		t.Fatalf("state = %s/%s abandoned %d", h.run.Status, h.run.EndReason, h.run.AbandonedCalls)
	}
}

func TestCommandsOnEndedRunReturnFinalState(t *testing.T) {
	endings := map[string]func(h *harness){
		"completed": func(h *harness) { h.mustDo(domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 10}) },
		"failed":    func(h *harness) { h.mustDo(domain.CompleteRun{Outcome: domain.OutcomeFailed, Error: "boom"}) },
		"stale":     func(h *harness) { h.clock.advance(time.Hour); h.mustDo(domain.FailStale{}) },
		"forced":    func(h *harness) { h.clock.advance(time.Hour); h.mustDo(domain.RequestCancel{}) },
		"paused": func(h *harness) {
			h.mustDo(domain.PauseRun{})
			h.mustDo(domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 10})
		},
	}
	commands := map[string]domain.Command{
		"heartbeat": domain.RecordHeartbeat{CompletedCalls: 10},
		"cancel":    domain.RequestCancel{},
		"complete":  domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: 10},
		"failstale": domain.FailStale{},
		"pause":     domain.PauseRun{Reason: "lunch"},
		"resume":    domain.ResumeRun{},
	}
	for ending, end := range endings {
		for name, cmd := range commands {
			t.Run(ending+"/"+name, func(t *testing.T) {
				h := newHarness(t, 10)
				end(h)
				final := h.run
				h.clock.advance(2 * time.Hour)
				evs, err := h.do(cmd)
				var ended *domain.RunEndedError
				if !errors.As(err, &ended) || !errors.Is(err, domain.ErrRunEnded) {
					t.Fatalf("got %v %v, want *RunEndedError", types(evs), err)
				}
				if ended.Final != final {
					t.Fatalf("final state = %+v, want %+v", ended.Final, final)
				}
			})
		}
	}
}

func TestProgressValidation(t *testing.T) {
	cases := []struct {
		name      string
		completed int
		failed    int
		field     string
	}{
		{"completed backwards", 4, 2, "completed_calls"},
		{"failed backwards", 5, 1, "failed_calls"},
		{"negative completed", -1, 2, "completed_calls"},
		{"negative failed", 5, -3, "failed_calls"},
		{"past total", 8, 3, "completed_calls"},
	}
	for _, tc := range cases {
		for _, cmd := range []domain.Command{
			domain.RecordHeartbeat{CompletedCalls: tc.completed, FailedCalls: tc.failed},
			domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: tc.completed, FailedCalls: tc.failed},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := newHarness(t, 10)
				h.clock.advance(time.Minute)
				h.mustDo(domain.RecordHeartbeat{CompletedCalls: 5, FailedCalls: 2})
				before := h.run
				h.clock.advance(time.Minute)
				_, err := h.do(cmd)
				var ve *domain.ValidationError
				if !errors.As(err, &ve) || ve.Fields[0].Field != tc.field {
					t.Fatalf("%T: err = %v, want validation error on %s", cmd, err, tc.field)
				}
				if h.run != before {
					t.Fatalf("rejected command changed the state")
				}
			})
		}
	}
}

func TestStartValidation(t *testing.T) {
	id := uuid.New()
	cases := []struct {
		name  string
		cmd   domain.StartRun
		field string
	}{
		{"nil run id", domain.StartRun{BusinessID: "b", WorkerID: "w", TotalCalls: 1}, "run_id"},
		{"bad business", domain.StartRun{RunID: id, BusinessID: "a b", WorkerID: "w", TotalCalls: 1}, "business_id"},
		{"no worker", domain.StartRun{RunID: id, BusinessID: "b", TotalCalls: 1}, "worker_id"},
		{"negative total", domain.StartRun{RunID: id, BusinessID: "b", WorkerID: "w", TotalCalls: -1}, "total_calls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := domain.DefaultPolicy().Decide(domain.Run{}, tc.cmd, t0)
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || ve.Fields[0].Field != tc.field {
				t.Fatalf("err = %v, want validation error on %s", err, tc.field)
			}
		})
	}
}

func TestRetriedStartIsIdempotent(t *testing.T) {
	h := newHarness(t, 10)
	start := domain.StartRun{RunID: h.run.ID, BusinessID: "biz-1", WorkerID: "w1", TotalCalls: 10}
	if evs := h.mustDo(start); len(evs) != 0 {
		t.Fatalf("retried start appended %v", types(evs))
	}
	start.TotalCalls = 11
	if _, err := h.do(start); !errors.Is(err, domain.ErrRunExists) {
		t.Fatalf("different start on same id: %v, want ErrRunExists", err)
	}
}

func TestPolicyRefusesCoalescingBeyondTenthOfTTL(t *testing.T) {
	p := domain.Policy{StaleAfter: time.Minute, HeartbeatMinInterval: 7 * time.Second}
	var ve *domain.ValidationError
	if err := p.Validate(); !errors.As(err, &ve) || ve.Fields[0].Field != "heartbeat_min_interval" {
		t.Fatalf("Validate = %v", err)
	}
	p.HeartbeatMinInterval = 6 * time.Second
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate(6s of 1m) = %v", err)
	}
}

func TestEventsRoundTripThroughStoredForm(t *testing.T) {
	h := newHarness(t, 10)
	var all []domain.Event
	all = append(all, domain.RunStarted{RunID: h.run.ID, BusinessID: "b", WorkerID: "w", TotalCalls: 10, OccurredAt: t0})
	h.clock.advance(time.Hour)
	all = append(all, h.mustDo(domain.RequestCancel{Reason: "r", RequestedBy: "user:x"})...)
	for _, e := range all {
		typ, v, data, err := domain.MarshalEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := domain.UnmarshalEvent(typ, v, data)
		if err != nil || back != e {
			t.Fatalf("round trip of %s: %+v, %v", typ, back, err)
		}
	}
	if _, err := domain.UnmarshalEvent(domain.TypeHeartbeat, 99, []byte(`{}`)); err == nil {
		t.Fatal("future schema version accepted")
	}
}

func types(evs []domain.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventType()
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// PostgreSQL's jsonb refuses U+0000, so text carrying it must be refused as
// invalid input before it reaches the log (issue 9, bug 2).
func TestTextRefusesNUL(t *testing.T) {
	cases := []struct {
		name  string
		cmd   domain.Command
		fresh bool // decided on a run that does not exist yet
		field string
	}{
		{"start worker_id", domain.StartRun{RunID: uuid.New(), BusinessID: "b", WorkerID: "w\x00", TotalCalls: 1}, true, "worker_id"},
		{"start worker_id only NUL", domain.StartRun{RunID: uuid.New(), BusinessID: "b", WorkerID: "\x00", TotalCalls: 1}, true, "worker_id"},
		{"cancel reason", domain.RequestCancel{Reason: "stop\x00now"}, false, "reason"},
		{"complete error", domain.CompleteRun{Outcome: domain.OutcomeFailed, Error: "\x00boom"}, false, "error"},
		{"pause reason", domain.PauseRun{Reason: "lunch\x00"}, false, "reason"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 10)
			state := h.run
			if tc.fresh {
				state = domain.Run{}
			}
			evs, err := h.policy.Decide(state, tc.cmd, h.clock.now)
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || ve.Fields[0].Field != tc.field {
				t.Fatalf("got %v, %v; want a validation error on %s", types(evs), err, tc.field)
			}
			if want := "must not contain NUL characters"; ve.Fields[0].Reason != want {
				t.Fatalf("reason = %q, want %q", ve.Fields[0].Reason, want)
			}
		})
	}
}
