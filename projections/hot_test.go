package projections_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// TestHeartbeatMovesNoIndexedColumn: a stored heartbeat updates its run's
// snapshot (in the append) and its active_runs row (in the projector). An
// update can be HOT, staying on its page and writing no index entry, only if
// it changes no column an index holds (key, INCLUDE or predicate). The
// columns a heartbeat changes are found by comparing each row before and
// after one, through the real append and projector.
func TestHeartbeatMovesNoIndexedColumn(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	startProjector(t, pool, projections.Options{})
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	rn.Now = func() time.Time { return now }
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	rowOf := func(table string) map[string]json.RawMessage {
		t.Helper()
		var raw []byte
		if err := pool.QueryRow(ctx, `SELECT to_jsonb(r) FROM `+table+` r WHERE run_id = $1`, run).Scan(&raw); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		var row map[string]json.RawMessage
		if err := json.Unmarshal(raw, &row); err != nil {
			t.Fatal(err)
		}
		return row
	}
	waitCaughtUp(t, pool)
	before := map[string]map[string]json.RawMessage{"run_snapshots": rowOf("run_snapshots"), "active_runs": rowOf("active_runs")}
	now = now.Add(30 * time.Second) // past the coalescing interval: the heartbeat is stored
	if _, err := rn.Execute(ctx, "acme", run, domain.RecordHeartbeat{CompletedCalls: 1}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, pool)
	for table, old := range before {
		row := rowOf(table)
		var moved []string
		for col, v := range row {
			if string(old[col]) != string(v) {
				moved = append(moved, col)
			}
		}
		if len(moved) == 0 || string(old["last_heartbeat_at"]) == string(row["last_heartbeat_at"]) {
			t.Fatalf("%s: the heartbeat moved %v, want last_heartbeat_at among them", table, moved)
		}
		t.Logf("%s: a heartbeat moves %v", table, moved)
		for _, col := range moved {
			var indexes []string
			if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}')
				FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
				WHERE x.indrelid = $1::regclass AND pg_get_indexdef(x.indexrelid) ~ ('\m' || $2 || '\M')`, table, col).Scan(&indexes); err != nil {
				t.Fatal(err)
			}
			if len(indexes) > 0 {
				t.Errorf("%s.%s moves with every heartbeat and is held by %v: no heartbeat's update of %s is HOT", table, col, indexes, table)
			}
		}
	}
}
