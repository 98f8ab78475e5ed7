package projections_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/migrations"
	"github.com/runledger/runledger/projections"
)

// legacyVersion is the last migration of the release that wrote the fixture
// (testdata/legacy): before pause, stall and per-run policy.
const legacyVersion = 6

// A log written before pause, stall and per-run policy existed, with the
// read models that release built from it, upgrades through the migrations
// and then verifies clean; a rebuild gives the same rows, and replay gives
// the same answers at the same instants.
func TestLegacyLogReplaysUnchanged(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.EmptyURL(t))
	if _, err := migrations.ApplyUpTo(ctx, pool, legacyVersion); err != nil {
		t.Fatal(err)
	}
	loadLegacy(t, pool)
	if _, err := migrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	assertVerified(t, pool) // the upgraded rows equal today's fold of the old log

	wantRuns := readLines(t, "testdata/legacy/runs.jsonl")
	if _, err := projections.Rebuild(ctx, pool, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range wantRuns {
		var old map[string]any
		_ = json.Unmarshal([]byte(want), &old)
		var got map[string]any
		var raw []byte
		if err := pool.QueryRow(ctx, `SELECT row_to_json(r)::text::bytea FROM runs r WHERE run_id = $1`, old["run_id"]).Scan(&raw); err != nil {
			t.Fatalf("run %v after the rebuild: %v", old["run_id"], err)
		}
		_ = json.Unmarshal(raw, &got)
		for col, v := range old {
			if norm(got[col]) != norm(v) {
				t.Errorf("run %v: %s = %v after the rebuild, %v before", old["run_id"], col, got[col], v)
			}
		}
	}
	store := eventstore.New(pool)
	replays := readLines(t, "testdata/legacy/replays.jsonl")
	for _, line := range replays {
		var want audit.ReplayResult
		if err := json.Unmarshal([]byte(line), &want); err != nil {
			t.Fatal(err)
		}
		var old struct { // that release named the last sign of life last_activity_at
			Run *struct {
				LastActivityAt time.Time `json:"last_activity_at"`
			} `json:"run"`
		}
		_ = json.Unmarshal([]byte(line), &old)
		if want.Run != nil && old.Run != nil {
			want.Run.LastHeartbeatAt = old.Run.LastActivityAt
		}
		got, err := audit.Replay(ctx, store, want.BusinessID, want.At, domain.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != want.Status || got.Active != want.Active || got.Events != want.Events || !sameRun(got, want) {
			t.Errorf("replay of %s at %s: %d active=%v (%d events, %s), before %d active=%v (%d events, %s)",
				want.BusinessID, want.At.Format(time.RFC3339Nano), got.Status, got.Active, got.Events, got.Reason,
				want.Status, want.Active, want.Events, want.Reason)
		}
	}
	if len(wantRuns) == 0 || len(replays) == 0 {
		t.Fatal("empty fixture")
	}
}

func sameRun(a, b audit.ReplayResult) bool {
	if (a.Run == nil) != (b.Run == nil) {
		return false
	}
	return a.Run == nil || (a.Run.ID == b.Run.ID && a.Run.Status == b.Run.Status && a.Run.Version == b.Run.Version &&
		a.Run.CompletedCalls == b.Run.CompletedCalls && a.Run.FailedCalls == b.Run.FailedCalls &&
		a.Run.LastHeartbeatAt.Equal(b.Run.LastHeartbeatAt) && a.Run.EndReason == b.Run.EndReason)
}

// norm compares JSON values across PostgreSQL's and Go's time formats.
func norm(v any) string {
	if s, ok := v.(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
		if t, err := time.Parse("2006-01-02T15:04:05.999999-07:00", s); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	raw, _ := json.Marshal(v)
	return string(raw)
}

// loadLegacy writes the fixture's log, read models and offsets (the
// projector of that release had applied everything) as that release left them.
func loadLegacy(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, line := range readLines(t, "testdata/legacy/events.jsonl") {
			if _, err := tx.Exec(ctx, `INSERT INTO events (position, event_id, stream_id, stream_version, business_id, type,
				schema_version, data, metadata, occurred_at, recorded_at)
				SELECT position, event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata,
					occurred_at, recorded_at FROM json_populate_record(NULL::events, $1::json)`, line); err != nil {
				return err
			}
		}
		for _, table := range []string{"runs", "active_runs"} {
			for _, line := range readLines(t, "testdata/legacy/"+table+".jsonl") {
				if _, err := tx.Exec(ctx, `INSERT INTO `+table+` SELECT * FROM json_populate_record(NULL::`+table+`, $1::json)`, line); err != nil {
					return err
				}
			}
		}
		_, err := tx.Exec(ctx, `
			SELECT setval(pg_get_serial_sequence('events', 'position'), (SELECT max(position) FROM events));
			INSERT INTO projection_offsets (consumer_group, offset_acked, last_processed_transaction_id)
			SELECT g, (SELECT max(position) FROM events), pg_current_xact_id() FROM unnest(ARRAY['runs', 'active_runs']) AS g`)
		return err
	})
	if err != nil {
		t.Fatalf("load the legacy fixture: %v", err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
