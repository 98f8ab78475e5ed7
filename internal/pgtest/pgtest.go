// Package pgtest gives tests a real, isolated PostgreSQL database.
//
// Use it from TestMain: pgtest.Main(m). When TEST_DATABASE_URL is set, that
// server is used; otherwise a private throwaway cluster is started from the
// machine's PostgreSQL binaries for the test binary's lifetime. Each call to
// NewDB creates a fresh database, cloned from a migrated template, and drops
// it when the test ends; EmptyURL gives an unmigrated one, for the migrations'
// own tests.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/pglocal"
	"github.com/runledger/runledger/migrations"
)

var (
	serverURL string // URL of the maintenance database on the server
	template  string
	counter   atomic.Int64
	prepOnce  sync.Once
	prepErr   error
)

// Main runs the tests of a package against a PostgreSQL server and exits.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		serverURL = u
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "runledger-pgtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	cluster, err := pglocal.Start(ctx, pglocal.Options{Dir: dir + "/data", Fast: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: start PostgreSQL:", err)
		return 1
	}
	defer cluster.Stop(context.Background())
	if err := cluster.StopWhenGone(os.Getpid()); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	serverURL = cluster.URL("postgres")
	return m.Run()
}

// URL returns the connection string of a fresh database, migrated, dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	if serverURL == "" {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain")
	}
	prepOnce.Do(func() { prepErr = prepareTemplate() })
	if prepErr != nil {
		t.Fatalf("pgtest: template: %v", prepErr)
	}
	return createDB(t, "TEMPLATE "+template)
}

// EmptyURL returns the connection string of a fresh database with no schema
// at all (not even the migrations' tables), dropped when t ends: for tests of
// the migrations themselves.
func EmptyURL(t testing.TB) string {
	t.Helper()
	if serverURL == "" {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain")
	}
	return createDB(t, "TEMPLATE template0")
}

// createDB creates a database with the given CREATE DATABASE options and
// drops it when t ends.
func createDB(t testing.TB, options string) string {
	t.Helper()
	name := fmt.Sprintf("rl_test_%d_%d", os.Getpid(), counter.Add(1))
	admin := connect(t, serverURL)
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), fmt.Sprintf(`CREATE DATABASE %s %s`, name, options)); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		admin := connect(t, serverURL)
		defer admin.Close(context.Background())
		if _, err := admin.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return withDatabase(serverURL, name)
}

// NewDB returns a pool on a fresh migrated database, closed and dropped when t ends.
func NewDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return Pool(t, URL(t))
}

// Pool opens a pool on dbURL that is closed when t ends.
func Pool(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	return TracedPool(t, dbURL, nil)
}

// TracedPool is Pool whose connections report their statements to tracer
// (nil for none).
func TracedPool(t testing.TB, dbURL string, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 40
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func prepareTemplate() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	template = fmt.Sprintf("rl_template_%d", os.Getpid())
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+template); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+template); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, withDatabase(serverURL, template))
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = migrations.Apply(ctx, pool)
	return err
}

func connect(t testing.TB, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	return c
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		panic(fmt.Sprintf("pgtest: TEST_DATABASE_URL must be a postgres:// URL: %v", err))
	}
	u.Path = "/" + db
	return u.String()
}

// IsolatedURL starts a PostgreSQL cluster of the test's own (stopped when it
// ends) and returns the URL of an empty database on it, which a served
// process migrates. For fault tests that hold transactions open on purpose:
// transaction ids and pg_snapshot_xmin are cluster-wide, so on the shared
// cluster they would hold back every other test's projections too.
func IsolatedURL(t testing.TB) string {
	t.Helper()
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("pgtest: this test starts a cluster of its own; not with TEST_DATABASE_URL")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "runledger-pgtest-isolated-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	cluster, err := pglocal.Start(ctx, pglocal.Options{Dir: dir + "/data", Fast: true})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("pgtest: start an isolated cluster: %v", err)
	}
	t.Cleanup(func() {
		_ = cluster.Stop(context.Background())
		os.RemoveAll(dir)
	})
	if err := cluster.StopWhenGone(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, cluster.URL("postgres"))
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE DATABASE runledger`); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return cluster.URL("runledger")
}
