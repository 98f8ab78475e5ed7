package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// A run is judged by the TTL it recorded, not by the service's: a 2m run is
// not active after 2m1s while the service default is 15m, the reaper ends it
// then and records 2m, and a cancel then is forced.
func TestRunIsJudgedByItsOwnTTL(t *testing.T) {
	cases := []struct {
		name   string
		silent time.Duration
		active bool
	}{
		{"silent 1m59s: active", time.Minute + 59*time.Second, true},
		{"silent exactly 2m: not active", 2 * time.Minute, false},
		{"silent 2m1s: not active", 2*time.Minute + time.Second, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, domain.DefaultPolicy(), domain.StartRun{TotalCalls: 10, StaleAfter: 2 * time.Minute})
			now := h.clock.advance(tc.silent)
			if got := h.run.Active(now, h.policy.StaleAfter); got != tc.active {
				t.Fatalf("Active(%s, service 15m) = %v, want %v", tc.silent, got, tc.active)
			}
			if got, want := h.run.StaleAt(h.policy.StaleAfter), t0.Add(2*time.Minute); !got.Equal(want) {
				t.Fatalf("StaleAt = %v, want %v", got, want)
			}
			evs, err := h.do(domain.FailStale{DetectedBy: "reaper"})
			if tc.active {
				if !errors.Is(err, domain.ErrNotStale) {
					t.Fatalf("FailStale on an active 2m run: %v %v, want ErrNotStale", types(evs), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FailStale: %v", err)
			}
			if sf := evs[0].(domain.RunStaleFailed); time.Duration(sf.StaleAfter) != 2*time.Minute {
				t.Fatalf("RunStaleFailed.StaleAfter = %s, want the run's 2m", sf.StaleAfter)
			}
			if h.run.EndReason != domain.EndStale {
				t.Fatalf("ended %s/%s, want failed/stale", h.run.Status, h.run.EndReason)
			}
		})
	}
}

func TestForcedCancelUsesTheRunsTTL(t *testing.T) {
	cases := []struct {
		name   string
		start  domain.StartRun
		silent time.Duration
		forced bool
	}{
		{"2m run silent 2m1s: forced", domain.StartRun{TotalCalls: 1, StaleAfter: 2 * time.Minute}, 2*time.Minute + time.Second, true},
		{"1h run silent 20m: graceful", domain.StartRun{TotalCalls: 1, StaleAfter: time.Hour}, 20 * time.Minute, false},
		{"service TTL run silent 20m: forced", domain.StartRun{TotalCalls: 1}, 20 * time.Minute, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, domain.DefaultPolicy(), tc.start)
			h.clock.advance(tc.silent)
			evs := h.mustDo(domain.RequestCancel{})
			if forced := evs[0].(domain.CancelRequested).Forced; forced != tc.forced {
				t.Fatalf("Forced = %v, want %v", forced, tc.forced)
			}
		})
	}
}

// RunStarted records the values in force, so a later change of the
// service's configuration changes nothing for the run.
func TestRunStartedRecordsThePolicyInForce(t *testing.T) {
	cases := []struct {
		name           string
		policy         domain.Policy
		start          domain.StartRun
		stale, stalled time.Duration
	}{
		{"service defaults", domain.DefaultPolicy(), domain.StartRun{}, 15 * time.Minute, 10 * time.Minute},
		{"both set by the start", domain.DefaultPolicy(), domain.StartRun{StaleAfter: 2 * time.Hour, StallAfter: 30 * time.Minute},
			2 * time.Hour, 30 * time.Minute},
		{"stale_after set, stall_after the service's", domain.Policy{StaleAfter: 20 * time.Minute, StallAfter: 7 * time.Minute},
			domain.StartRun{StaleAfter: 3 * time.Minute}, 3 * time.Minute, 7 * time.Minute},
		{"a Policy without StallAfter means 10m", domain.Policy{StaleAfter: 20 * time.Minute, HeartbeatMinInterval: time.Second},
			domain.StartRun{}, 20 * time.Minute, 10 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.start.RunID, tc.start.BusinessID, tc.start.WorkerID = uuid.New(), "b", "w"
			evs, err := tc.policy.Decide(domain.Run{}, tc.start, t0)
			if err != nil {
				t.Fatal(err)
			}
			rs := evs[0].(domain.RunStarted)
			if time.Duration(rs.StaleAfter) != tc.stale || time.Duration(rs.StallAfter) != tc.stalled {
				t.Fatalf("RunStarted policy = %s/%s, want %s/%s", rs.StaleAfter, rs.StallAfter, tc.stale, tc.stalled)
			}
			run := domain.Evolve(domain.Run{}, rs)
			other := domain.Policy{StaleAfter: time.Hour, StallAfter: time.Hour} // the service reconfigured later
			if other.StaleAfterFor(run) != tc.stale || other.StallAfterFor(run) != tc.stalled {
				t.Fatalf("run judged by %s/%s, want its own %s/%s", other.StaleAfterFor(run), other.StallAfterFor(run), tc.stale, tc.stalled)
			}
		})
	}
}

func TestStartPolicyValidation(t *testing.T) {
	cases := []struct {
		name   string
		policy domain.Policy
		start  domain.StartRun
		field  string // "" when accepted
	}{
		{"stale_after 1m (the minimum)", domain.DefaultPolicy(), domain.StartRun{StaleAfter: time.Minute}, ""},
		{"stale_after 24h (the maximum)", domain.DefaultPolicy(), domain.StartRun{StaleAfter: 24 * time.Hour}, ""},
		{"stale_after 59s", domain.DefaultPolicy(), domain.StartRun{StaleAfter: 59 * time.Second}, "stale_after"},
		{"stale_after 24h1s", domain.DefaultPolicy(), domain.StartRun{StaleAfter: 24*time.Hour + time.Second}, "stale_after"},
		{"stale_after negative", domain.DefaultPolicy(), domain.StartRun{StaleAfter: -time.Minute}, "stale_after"},
		{"stall_after 1m (the minimum)", domain.DefaultPolicy(), domain.StartRun{StallAfter: time.Minute}, ""},
		{"stall_after 24h (the maximum)", domain.DefaultPolicy(), domain.StartRun{StallAfter: 24 * time.Hour}, ""},
		{"stall_after 30s", domain.DefaultPolicy(), domain.StartRun{StallAfter: 30 * time.Second}, "stall_after"},
		{"stall_after 25h", domain.DefaultPolicy(), domain.StartRun{StallAfter: 25 * time.Hour}, "stall_after"},
		{"stale_after 1m with a 6s minimum heartbeat interval", domain.Policy{StaleAfter: time.Hour, HeartbeatMinInterval: 6 * time.Second},
			domain.StartRun{StaleAfter: time.Minute}, ""},
		{"stale_after 1m with a 7s minimum heartbeat interval", domain.Policy{StaleAfter: time.Hour, HeartbeatMinInterval: 7 * time.Second},
			domain.StartRun{StaleAfter: time.Minute}, "stale_after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.start.RunID, tc.start.BusinessID, tc.start.WorkerID, tc.start.TotalCalls = uuid.New(), "b", "w", 1
			evs, err := tc.policy.Decide(domain.Run{}, tc.start, t0)
			if tc.field == "" {
				if err != nil || len(evs) != 1 {
					t.Fatalf("got %v, %v; want a RunStarted", types(evs), err)
				}
				return
			}
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != tc.field {
				t.Fatalf("got %v, %v; want one validation error on %s", types(evs), err, tc.field)
			}
		})
	}
}

func TestRetriedStartComparesThePolicy(t *testing.T) {
	cases := []struct {
		name    string
		retried domain.StartRun
		exists  bool
	}{
		{"same values", domain.StartRun{StaleAfter: 2 * time.Minute, StallAfter: 5 * time.Minute}, false},
		{"policy left to the service: the body's retry", domain.StartRun{}, false},
		{"the recorded values spelled out", domain.StartRun{StaleAfter: 2 * time.Minute}, false},
		{"another stale_after", domain.StartRun{StaleAfter: 3 * time.Minute, StallAfter: 5 * time.Minute}, true},
		{"another stall_after", domain.StartRun{StaleAfter: 2 * time.Minute, StallAfter: 6 * time.Minute}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, domain.DefaultPolicy(), domain.StartRun{TotalCalls: 10, StaleAfter: 2 * time.Minute, StallAfter: 5 * time.Minute})
			tc.retried.RunID, tc.retried.BusinessID, tc.retried.WorkerID, tc.retried.TotalCalls = h.run.ID, "biz-1", "w1", 10
			evs, err := h.do(tc.retried)
			if tc.exists {
				if !errors.Is(err, domain.ErrRunExists) {
					t.Fatalf("got %v, %v; want ErrRunExists", types(evs), err)
				}
				return
			}
			if err != nil || len(evs) != 0 {
				t.Fatalf("got %v, %v; want acknowledged, nothing new", types(evs), err)
			}
		})
	}
}

func TestPolicyValidateRefusesNegativeStallAfter(t *testing.T) {
	p := domain.DefaultPolicy()
	p.StallAfter = -time.Second
	var ve *domain.ValidationError
	if err := p.Validate(); !errors.As(err, &ve) || ve.Fields[0].Field != "stall_after" {
		t.Fatalf("Validate = %v, want a validation error on stall_after", err)
	}
	p.StallAfter = 0 // means the default
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate(StallAfter 0) = %v", err)
	}
}
