package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
	"github.com/runledger/runledger/migrations"
)

// seedLogSQL writes a log the way appends do, in many small transactions:
// each run's start and heartbeats commit together (a group-commit
// statement's worth), with its snapshot and its read-model row, as the
// schema of version 5 holds them.
const seedLogSQL = `
CREATE PROCEDURE seed_log(runs int, beats int) LANGUAGE plpgsql AS $$
DECLARE
	id uuid;
	biz text;
	t0 timestamptz := '2026-01-01T00:00:00Z';
	second interval := interval '1 second';
BEGIN
	FOR r IN 1..runs LOOP
		id := gen_random_uuid();
		biz := 'b' || r;
		INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, occurred_at)
		SELECT gen_random_uuid(), id, v, biz,
			CASE WHEN v = 1 THEN 'RunStarted' ELSE 'Heartbeat' END, 1,
			CASE WHEN v = 1 THEN jsonb_build_object('run_id', id, 'business_id', biz, 'worker_id', 'w', 'total_calls', beats, 'occurred_at', t0)
			ELSE jsonb_build_object('completed_calls', v - 1, 'failed_calls', 0, 'occurred_at', t0 + v * second) END,
			t0 + v * second
		FROM generate_series(1, beats + 1) v;
		INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, state)
		VALUES (id, biz, beats + 1, true, t0 + (beats + 1) * second,
			convert_to(jsonb_build_object('run_id', id, 'business_id', biz, 'status', 'completed', 'version', beats + 1)::text, 'UTF8'));
		INSERT INTO runs (run_id, business_id, worker_id, status, cancel_requested, cancel_forced, total_calls,
			completed_calls, failed_calls, abandoned_calls, started_at, last_heartbeat_at, version, last_position)
		VALUES (id, biz, 'w', 'completed', false, false, beats, beats, 0, 0, t0, t0 + (beats + 1) * second, beats + 1, 0);
		COMMIT;
	END LOOP;
END $$`

// A database written by the previous releases (schema version 5, before
// 0006 and 0007 backfill across the log) holding a million events upgrades
// through serve's start-up under a 1 s request timeout: the migrations run
// on their own connection, without the requests' timeouts, and log their
// progress. (At version 6 with 2 M events, serve exited 1 with "migrate
// 0007_pause_stall_policy.sql: canceling statement due to statement timeout".)
func TestServeUpgradesALargeLogUnderAShortRequestTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a million events")
	}
	servetest.Binary(t) // built before the clock starts
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	pool := pgtest.Pool(t, url)
	if _, err := migrations.ApplyUpTo(ctx, pool, 5); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := pool.Exec(ctx, seedLogSQL); err != nil {
		t.Fatal(err)
	}
	// The log's indexes (but its primary key) are built once after the
	// seeding, as they stand after the appends: maintaining them row by row
	// made the seeding the better part of the test's time.
	var rebuild []string
	rows, err := pool.Query(ctx, `SELECT format('ALTER TABLE events ADD CONSTRAINT %I %s', conname, pg_get_constraintdef(oid))
		FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'u'
		UNION ALL
		SELECT pg_get_indexdef(indexrelid) FROM pg_index i WHERE indrelid = 'events'::regclass AND NOT indisunique`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			t.Fatal(err)
		}
		rebuild = append(rebuild, def)
	}
	if rows.Err() != nil || len(rebuild) < 4 {
		t.Fatalf("indexes of events: %v, %v", rebuild, rows.Err())
	}
	if _, err := pool.Exec(ctx, `DO $$ DECLARE c text; i text; BEGIN
		FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'u' LOOP
			EXECUTE format('ALTER TABLE events DROP CONSTRAINT %I', c);
		END LOOP;
		FOR i IN SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'events'::regclass AND NOT indisunique LOOP
			EXECUTE 'DROP INDEX ' || i;
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	const runs, beats = 10_000, 99
	if _, err := pool.Exec(ctx, `CALL seed_log($1, $2)`, runs, beats); err != nil {
		t.Fatal(err)
	}
	for _, sql := range append(rebuild, `DROP PROCEDURE seed_log`, `ANALYZE`) {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var events int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil || events != runs*(beats+1) {
		t.Fatalf("seeded %d events (%v), want %d", events, err, runs*(beats+1))
	}
	t.Logf("seeded %d events in %d transactions in %s", events, runs, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	srv := servetest.Start(t, servetest.Options{DatabaseURL: url, Secret: testSecret,
		Args: []string{"--request-timeout", "1s"}})
	t.Logf("serve migrated and answered in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", srv.Logs())
		}
	})

	// servetest's free port is found by closing a listener; on a machine
	// running many servers another may take it and answer /healthz while
	// this one still migrates (seen once, as "schema at version 5"), so the
	// test also waits for this process's own "serving" line.
	for deadline := time.Now().Add(3 * time.Minute); !strings.Contains(srv.Logs(), `"msg":"serving"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("serve did not log \"serving\" within 3 minutes")
		}
	}
	var version int64
	if err := pool.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 7 {
		t.Fatalf("schema at version %d after serve started, want 7 or later", version)
	}
	var missing int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM run_snapshots WHERE last_position = 0`).Scan(&missing); err != nil || missing != 0 {
		t.Fatalf("%d snapshots without their last position after 0006's backfill (%v)", missing, err)
	}
	// Progress: each migration's start, and its end with its duration.
	logs := srv.Logs()
	for _, name := range []string{"0006_snapshot_position_and_stale_at.sql", "0007_pause_stall_policy.sql"} {
		for _, msg := range []string{"migration started", "migration applied"} {
			found := false
			for _, line := range strings.Split(logs, "\n") {
				found = found || strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"migration":"`+name+`"`)
			}
			if !found {
				t.Errorf("no %q line for %s in the log:\n%s", msg, name, logs)
			}
		}
	}
}
