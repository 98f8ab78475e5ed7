package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// Runs carry their own TTL: the metrics say how long the open run furthest
// past its own stale_at has been (the reaper is behind when that grows),
// which the longest silence alone cannot (5 minutes of silence is fine for
// a run with the default 15 minutes, 4 minutes overdue for one with 1 minute).
func TestMetricsOverdueFollowsEachRunsTTL(t *testing.T) {
	e := newEnv(t) // no reaper: the silent run stays open
	e.must(e.do("POST", "/v1/businesses/short/runs", e.token("short", api.RoleWorker),
		map[string]any{"total_calls": 3, "worker_id": "w", "stale_after": "1m"}), 201, "")
	e.must(e.do("POST", "/v1/businesses/long/runs", e.token("long", api.RoleWorker),
		map[string]any{"total_calls": 3, "worker_id": "w"}), 201, "")
	e.caughtUp()
	e.clock.Advance(5 * time.Minute)
	m := e.must(e.do("GET", "/metrics", "", nil), 200, "")
	for _, want := range []string{"runledger_open_run_overdue_seconds 240\n", "runledger_oldest_open_run_silence_seconds 300\n", "runledger_active_runs 1\n"} {
		if !strings.Contains(string(m.raw), want) {
			t.Errorf("/metrics has no %q", strings.TrimSpace(want))
		}
	}
}
