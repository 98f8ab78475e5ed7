package migrations_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/migrations"
)

// TestUpgradeFromHandWrittenRunner: a database migrated by the runner that
// goose replaced gets only the migrations it lacks, once, even when several
// replicas start together, and ends with a new database's schema.
func TestUpgradeFromHandWrittenRunner(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		upTo     int64 // the last version the old runner applied
		replicas int
	}{
		{"at version 2", 2, 1},
		{"at version 3", 3, 1},
		{"at version 2, replicas at once", 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := pgtest.EmptyURL(t)
			pool := pgtest.Pool(t, url)
			all := embeddedNames(t)
			var missing []string
			for _, name := range all {
				if versionOf(t, name) > tt.upTo {
					missing = append(missing, name)
				}
			}
			legacyApply(t, pool, tt.upTo)

			var union []string
			for _, applied := range applyConcurrently(t, url, tt.replicas, migrations.Apply) {
				union = append(union, applied...)
			}
			slices.Sort(union)
			if !slices.Equal(union, missing) {
				t.Fatalf("upgrade applied %v; want %v", union, missing)
			}
			again, err := migrations.Apply(context.Background(), pool)
			if err != nil || len(again) != 0 {
				t.Fatalf("second Apply = %v, %v; want nothing applied", again, err)
			}
			assertVersionTable(t, pool, versionsOf(t, all))
			assertSameCatalog(t, pool, pgtest.NewDB(t))
			var legacyRows int64
			if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&legacyRows); err != nil || legacyRows != tt.upTo {
				t.Fatalf("schema_migrations has %d rows (%v); want the old runner's %d, untouched", legacyRows, err, tt.upTo)
			}
		})
	}
}

// TestUpgradeRenamesLastActivityInSnapshots: 0003's data change, applied by
// goose to a snapshot the old runner's schema held.
func TestUpgradeRenamesLastActivityInSnapshots(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.EmptyURL(t))
	ctx := context.Background()
	legacyApply(t, pool, 2)
	const stamp = "2024-05-01T10:00:00.123456Z"
	at, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		t.Fatal(err)
	}
	state := `{"run_id":"0b6f2a52-4c43-4d2e-9a0e-5d1c6a7e8f90","status":"running","last_activity_at":"` + stamp + `"}`
	if _, err := pool.Exec(ctx, `INSERT INTO run_snapshots (run_id, business_id, version, ended, last_activity_at, state)
		VALUES ('0b6f2a52-4c43-4d2e-9a0e-5d1c6a7e8f90', 'acme', 1, false, $1, $2)`, at, []byte(state)); err != nil {
		t.Fatal(err)
	}

	applied, err := migrations.Apply(ctx, pool)
	if err != nil || !slices.Contains(applied, "0003_last_heartbeat_at.sql") {
		t.Fatalf("Apply = %v, %v; want 0003 applied", applied, err)
	}

	var raw []byte
	var column time.Time
	if err := pool.QueryRow(ctx, `SELECT state, last_heartbeat_at FROM run_snapshots`).Scan(&raw, &column); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("state %q: %v", raw, err)
	}
	if got["last_heartbeat_at"] != stamp {
		t.Errorf("state last_heartbeat_at = %v; want %s (state %s)", got["last_heartbeat_at"], stamp, raw)
	}
	if _, ok := got["last_activity_at"]; ok {
		t.Errorf("state still has last_activity_at: %s", raw)
	}
	if got["status"] != "running" || got["run_id"] != "0b6f2a52-4c43-4d2e-9a0e-5d1c6a7e8f90" {
		t.Errorf("state lost its other keys: %s", raw)
	}
	if !column.Equal(at) {
		t.Errorf("column last_heartbeat_at = %v; want %v", column, at)
	}
}

// legacyApply migrates pool up to version upTo the way the hand-written
// runner did before goose (its lines, copied): schema_migrations, then each
// file in a transaction of its own, recorded by version and name.
func legacyApply(t *testing.T, pool *pgxpool.Pool, upTo int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, name := range embeddedNames(t) {
		version := versionOf(t, name)
		if version > upTo {
			break
		}
		sql, err := fs.ReadFile(migrations.Files, name)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("legacy %s: %v", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, version, name); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
