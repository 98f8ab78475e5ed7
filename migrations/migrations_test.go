package migrations_test

import (
	"context"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestApplyTwiceAppliesOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.EmptyURL(t))
	ctx := context.Background()
	all := embeddedNames(t)

	applied, err := migrations.Apply(ctx, pool)
	if err != nil || !slices.Equal(applied, all) {
		t.Fatalf("first Apply = %v, %v; want %v", applied, err, all)
	}
	applied, err = migrations.Apply(ctx, pool)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Apply = %v, %v; want nothing applied", applied, err)
	}
	assertVersionTable(t, pool, versionsOf(t, all))
	assertSameCatalog(t, pool, pgtest.NewDB(t))
}

// TestApplyConcurrentlyOnEmptyDatabase is replicas starting at once on a new
// database: each migration is applied by exactly one of them, and all succeed.
// With a slow last migration the replicas surely overlap: goose's own retry
// when two create its table at once can otherwise hide a missing lock.
func TestApplyConcurrentlyOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	const slow = "9002_slow.sql"
	tests := []struct {
		name  string
		apply applyFunc
		want  []string
	}{
		{"embedded", migrations.Apply, embeddedNames(t)},
		{"embedded and a slow one", func(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
			return migrations.ApplyFS(ctx, pool, withFile(t, slow, "-- +goose Up\nSELECT pg_sleep(2);\n"))
		}, append(embeddedNames(t), slow)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := pgtest.EmptyURL(t)
			perReplica := applyConcurrently(t, url, 4, tt.apply)

			var union []string
			for _, applied := range perReplica {
				union = append(union, applied...)
			}
			slices.Sort(union)
			if !slices.Equal(union, tt.want) {
				t.Fatalf("replicas applied %v together (%v each); want each of %v exactly once", union, perReplica, tt.want)
			}
			pool := pgtest.Pool(t, url)
			assertVersionTable(t, pool, versionsOf(t, tt.want))
			assertSameCatalog(t, pool, pgtest.NewDB(t))
		})
	}
}

// TestNoTransactionAnnotation proves a migration can run outside a
// transaction (CREATE INDEX CONCURRENTLY on events) when it says so, and that
// without the annotation a migration runs inside one.
func TestNoTransactionAnnotation(t *testing.T) {
	t.Parallel()
	const index = "CREATE INDEX CONCURRENTLY events_type_test ON events (type);\n"
	tests := []struct {
		name    string
		sql     string
		wantErr string // empty: the migration must apply
	}{
		{"annotated", "-- +goose Up\n-- +goose NO TRANSACTION\n" + index, ""},
		{"default", "-- +goose Up\n" + index, "cannot run inside a transaction block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.NewDB(t)
			const file = "9001_events_type_concurrently.sql"
			fsys := withFile(t, file, tt.sql)

			applied, err := migrations.ApplyFS(context.Background(), pool, fsys)

			var valid bool
			qerr := pool.QueryRow(context.Background(), `SELECT coalesce((SELECT indisvalid FROM pg_index
				WHERE indexrelid = to_regclass('events_type_test')), false)`).Scan(&valid)
			if qerr != nil {
				t.Fatal(qerr)
			}
			want := append(versionsOf(t, embeddedNames(t)), 9001)
			if tt.wantErr == "" {
				if err != nil || !slices.Equal(applied, []string{file}) || !valid {
					t.Fatalf("ApplyFS = %v, %v, index valid %v; want [%s] and a valid index", applied, err, valid, file)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), file) ||
					len(applied) != 0 || valid {
					t.Fatalf("ApplyFS = %v, %v, index valid %v; want an error naming %s and %q", applied, err, valid, file, tt.wantErr)
				}
				want = want[:len(want)-1]
			}
			assertVersionTable(t, pool, want)
		})
	}
}

type applyFunc func(context.Context, *pgxpool.Pool) ([]string, error)

// applyConcurrently runs apply on url from n replicas (a pool each) released
// together, and returns what each applied; it fails t if any apply fails.
func applyConcurrently(t *testing.T, url string, n int, apply applyFunc) [][]string {
	t.Helper()
	pools := make([]*pgxpool.Pool, n)
	for i := range pools {
		pools[i] = pgtest.Pool(t, url)
	}
	start := make(chan struct{})
	applied := make([][]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			applied[i], errs[i] = apply(context.Background(), pool)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Apply: %v", i, err)
		}
	}
	return applied
}

// embeddedNames returns the names of the embedded migrations, in order.
func embeddedNames(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(migrations.Files, "*.sql")
	if err != nil || len(names) < 3 {
		t.Fatalf("embedded migrations: %v, %v", names, err)
	}
	slices.Sort(names)
	return names
}

func versionOf(t *testing.T, name string) int64 {
	t.Helper()
	num, _, _ := strings.Cut(name, "_")
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		t.Fatalf("migration %s: %v", name, err)
	}
	return v
}

// versionsOf returns goose's version table for names applied to a new
// database: version 0, then each migration's number.
func versionsOf(t *testing.T, names []string) []int64 {
	t.Helper()
	versions := []int64{0}
	for _, name := range names {
		versions = append(versions, versionOf(t, name))
	}
	return versions
}

// assertVersionTable fails t unless goose's table holds exactly want, each
// version once and applied, in the order written.
func assertVersionTable(t *testing.T, pool *pgxpool.Pool, want []int64) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT version_id, is_applied FROM goose_db_version ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for rows.Next() {
		var v int64
		var applied bool
		if err := rows.Scan(&v, &applied); err != nil {
			t.Fatal(err)
		}
		if !applied {
			t.Errorf("version %d recorded as not applied", v)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("goose_db_version = %v; want %v", got, want)
	}
}

// withFile returns the embedded migrations plus one more file.
func withFile(t *testing.T, name, body string) fs.FS {
	t.Helper()
	fsys := fstest.MapFS{name: {Data: []byte(body)}}
	for _, n := range embeddedNames(t) {
		data, err := fs.ReadFile(migrations.Files, n)
		if err != nil {
			t.Fatal(err)
		}
		fsys[n] = &fstest.MapFile{Data: data}
	}
	return fsys
}
