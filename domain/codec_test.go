package domain_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

func TestEveryEventRoundTripsThroughItsStoredForm(t *testing.T) {
	id := uuid.MustParse("0c462589-cfa4-43c3-9ac3-c63e7c146322")
	cases := []struct {
		event   domain.Event
		version int
	}{
		{domain.RunStarted{RunID: id, BusinessID: "b", WorkerID: "w", TotalCalls: 10,
			StaleAfter: domain.Duration(2 * time.Minute), StallAfter: domain.Duration(10 * time.Minute), OccurredAt: t0}, 2},
		{domain.Heartbeat{CompletedCalls: 3, FailedCalls: 1, CancelDelivered: true, OccurredAt: t0}, 1},
		{domain.CancelRequested{Reason: "r", RequestedBy: "user:x", Forced: true, SilentFor: domain.Duration(20 * time.Minute), OccurredAt: t0}, 1},
		{domain.RunCompleted{Outcome: domain.OutcomeFailed, Error: "boom", CompletedCalls: 3, FailedCalls: 1, OccurredAt: t0}, 1},
		{domain.RunStaleFailed{LastHeartbeatAt: t0, StaleAfter: domain.Duration(2 * time.Minute), DetectedAt: t0.Add(time.Hour),
			AbandonedCalls: 6, CancelRequested: true, DetectedBy: "reaper"}, 1},
		{domain.PauseRequested{Reason: "lunch", RequestedBy: "user:alice", OccurredAt: t0}, 1},
		{domain.RunResumed{RequestedBy: "user:bob", OccurredAt: t0}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.event.EventType(), func(t *testing.T) {
			typ, v, data, err := domain.MarshalEvent(tc.event)
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.event.EventType() || v != tc.version || domain.SchemaVersionOf(typ) != tc.version {
				t.Fatalf("stored as %s v%d, want %s v%d", typ, v, tc.event.EventType(), tc.version)
			}
			back, err := domain.UnmarshalEvent(typ, v, data)
			if err != nil || back != tc.event {
				t.Fatalf("round trip of %s: %+v, %v; want %+v", typ, back, err, tc.event)
			}
		})
	}
}

// The stored names of the new events and of RunStarted's policy fields.
func TestNewPayloadFieldNames(t *testing.T) {
	cases := []struct {
		event domain.Event
		want  string
	}{
		{domain.RunStarted{RunID: uuid.Nil, BusinessID: "b", WorkerID: "w", TotalCalls: 1,
			StaleAfter: domain.Duration(2 * time.Minute), StallAfter: domain.Duration(90 * time.Second), OccurredAt: t0},
			`{"run_id":"00000000-0000-0000-0000-000000000000","business_id":"b","worker_id":"w","total_calls":1,` +
				`"stale_after":"2m0s","stall_after":"1m30s","occurred_at":"2026-11-28T09:00:00Z"}`},
		{domain.PauseRequested{Reason: "lunch", RequestedBy: "user:alice", OccurredAt: t0},
			`{"reason":"lunch","requested_by":"user:alice","occurred_at":"2026-11-28T09:00:00Z"}`},
		{domain.RunResumed{RequestedBy: "user:bob", OccurredAt: t0},
			`{"requested_by":"user:bob","occurred_at":"2026-11-28T09:00:00Z"}`},
	}
	for _, tc := range cases {
		t.Run(tc.event.EventType(), func(t *testing.T) {
			_, _, data, err := domain.MarshalEvent(tc.event)
			if err != nil || string(data) != tc.want {
				t.Fatalf("payload = %s, %v; want %s", data, err, tc.want)
			}
		})
	}
}

// Payloads exactly as a log written before this change stores them (taken
// from projections/testdata/legacy/events.jsonl) decode to the same facts.
func TestVersion1PayloadsDecodeUnchanged(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	cases := []struct {
		name string
		typ  string
		data string
		want domain.Event
	}{
		{"RunStarted", domain.TypeRunStarted,
			`{"run_id": "0c462589-cfa4-43c3-9ac3-c63e7c146322", "worker_id": "w", "business_id": "biz-2", "occurred_at": "2026-11-28T09:00:06Z", "total_calls": 50}`,
			domain.RunStarted{RunID: uuid.MustParse("0c462589-cfa4-43c3-9ac3-c63e7c146322"), WorkerID: "w", BusinessID: "biz-2",
				OccurredAt: at("2026-11-28T09:00:06Z"), TotalCalls: 50}},
		{"Heartbeat", domain.TypeHeartbeat,
			`{"occurred_at": "2026-11-28T09:01:34Z", "failed_calls": 0, "completed_calls": 2, "cancel_delivered": true}`,
			domain.Heartbeat{CompletedCalls: 2, CancelDelivered: true, OccurredAt: at("2026-11-28T09:01:34Z")}},
		{"CancelRequested forced", domain.TypeCancelRequested,
			`{"forced": true, "reason": "test", "silent_for": "23m42s", "occurred_at": "2026-11-28T11:04:39Z"}`,
			domain.CancelRequested{Forced: true, Reason: "test", SilentFor: domain.Duration(23*time.Minute + 42*time.Second),
				OccurredAt: at("2026-11-28T11:04:39Z")}},
		{"CancelRequested by a user", domain.TypeCancelRequested,
			`{"forced": false, "reason": "wrong list", "occurred_at": "2026-11-28T09:17:23Z", "requested_by": "user:alice"}`,
			domain.CancelRequested{Reason: "wrong list", RequestedBy: "user:alice", OccurredAt: at("2026-11-28T09:17:23Z")}},
		{"RunCompleted", domain.TypeRunCompleted,
			`{"outcome": "completed", "occurred_at": "2026-11-28T09:04:58Z", "failed_calls": 0, "completed_calls": 6}`,
			domain.RunCompleted{Outcome: domain.OutcomeCompleted, CompletedCalls: 6, OccurredAt: at("2026-11-28T09:04:58Z")}},
		{"RunStaleFailed", domain.TypeRunStaleFailed,
			`{"detected_at": "2026-11-28T12:56:50Z", "detected_by": "start", "stale_after": "15m0s", "abandoned_calls": 16, "cancel_requested": true, "last_activity_at": "2026-11-28T12:36:15Z"}`,
			domain.RunStaleFailed{DetectedAt: at("2026-11-28T12:56:50Z"), DetectedBy: "start", StaleAfter: domain.Duration(15 * time.Minute),
				AbandonedCalls: 16, CancelRequested: true, LastHeartbeatAt: at("2026-11-28T12:36:15Z")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domain.UnmarshalEvent(tc.typ, 1, []byte(tc.data))
			if err != nil || got != tc.want {
				t.Fatalf("decode v1 %s: %+v, %v; want %+v", tc.typ, got, err, tc.want)
			}
		})
	}
}

// A run started before runs recorded their policy is judged with the
// service's configured values, whatever they are now.
func TestVersion1RunStartedFoldsToARunJudgedByTheServicePolicy(t *testing.T) {
	const stored = `{"run_id": "0c462589-cfa4-43c3-9ac3-c63e7c146322", "worker_id": "w", "business_id": "biz-2", "occurred_at": "2026-11-28T09:00:06Z", "total_calls": 50}`
	start := time.Date(2026, 11, 28, 9, 0, 6, 0, time.UTC)
	cases := []struct {
		name   string
		policy domain.Policy
		ttl    time.Duration
		stall  time.Duration
	}{
		{"service defaults", domain.DefaultPolicy(), 15 * time.Minute, 10 * time.Minute},
		{"service reconfigured", domain.Policy{StaleAfter: 20 * time.Minute, StallAfter: 5 * time.Minute}, 20 * time.Minute, 5 * time.Minute},
		{"service Policy without StallAfter", domain.Policy{StaleAfter: 15 * time.Minute}, 15 * time.Minute, 10 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := domain.UnmarshalEvent(domain.TypeRunStarted, 1, []byte(stored))
			if err != nil {
				t.Fatal(err)
			}
			run := domain.Evolve(domain.Run{}, ev)
			if run.StaleAfter != 0 || run.StallAfter != 0 || !run.LastProgressAt.Equal(start) {
				t.Fatalf("folded v1 start: stale_after %s stall_after %s last progress %v", run.StaleAfter, run.StallAfter, run.LastProgressAt)
			}
			if !run.Active(start.Add(tc.ttl-time.Second), tc.policy.StaleAfter) || run.Active(start.Add(tc.ttl), tc.policy.StaleAfter) {
				t.Fatalf("v1 run not judged with the service TTL %s", tc.ttl)
			}
			if tc.policy.StaleAfterFor(run) != tc.ttl || tc.policy.StallAfterFor(run) != tc.stall {
				t.Fatalf("policy for the v1 run = %s/%s, want %s/%s", tc.policy.StaleAfterFor(run), tc.policy.StallAfterFor(run), tc.ttl, tc.stall)
			}
			if got := tc.policy.StalledSince(run); !got.Equal(start.Add(tc.stall)) {
				t.Fatalf("StalledSince = %v, want start + %s", got, tc.stall)
			}
			evs, err := tc.policy.Decide(run, domain.FailStale{DetectedBy: "reaper"}, start.Add(tc.ttl))
			if err != nil || time.Duration(evs[0].(domain.RunStaleFailed).StaleAfter) != tc.ttl {
				t.Fatalf("FailStale at the service TTL: %v, %v; want a RunStaleFailed recording %s", types(evs), err, tc.ttl)
			}
		})
	}
}

func TestUnknownVersionsAndTypesAreRefused(t *testing.T) {
	cases := []struct {
		typ     string
		version int
	}{
		{domain.TypeRunStarted, 0},
		{domain.TypeRunStarted, 3},
		{domain.TypeHeartbeat, 2},
		{domain.TypeCancelRequested, 2},
		{domain.TypeRunCompleted, 2},
		{domain.TypeRunStaleFailed, 2},
		{domain.TypePauseRequested, 2},
		{domain.TypeRunResumed, 2},
		{domain.TypeHeartbeat, 99},
		{"RunPaused", 1},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s v%d", tc.typ, tc.version), func(t *testing.T) {
			if ev, err := domain.UnmarshalEvent(tc.typ, tc.version, []byte(`{}`)); err == nil {
				t.Fatalf("UnmarshalEvent(%s, %d) = %+v, want an error", tc.typ, tc.version, ev)
			}
		})
	}
	if domain.SchemaVersionOf("RunPaused") != 0 {
		t.Fatal("SchemaVersionOf an unknown type is not 0")
	}
}

func TestRunStateSnapshotRoundTrips(t *testing.T) {
	h := startHarness(t, domain.DefaultPolicy(), domain.StartRun{TotalCalls: 10, StaleAfter: 2 * time.Minute, StallAfter: 3 * time.Minute})
	h.clock.advance(time.Minute)
	h.mustDo(domain.RecordHeartbeat{CompletedCalls: 4})
	h.mustDo(domain.PauseRun{Reason: "lunch", RequestedBy: "user:alice"})
	data, err := json.Marshal(h.run)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"stale_after":"2m0s"`, `"stall_after":"3m0s"`, `"paused":true`, `"paused_at":`,
		`"pause_reason":"lunch"`, `"paused_by":"user:alice"`, `"last_progress_at":"2026-11-28T09:01:00Z"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("run JSON %s lacks %s", data, field)
		}
	}
	var back domain.Run
	if err := json.Unmarshal(data, &back); err != nil || back != h.run {
		t.Fatalf("run JSON round trip: %+v, %v; want %+v", back, err, h.run)
	}
	if _, err := domain.UnmarshalEvent(domain.TypeRunStarted, 2, []byte(`{"stale_after": "soon"}`)); err == nil {
		t.Fatal("a malformed duration decoded")
	}
}
