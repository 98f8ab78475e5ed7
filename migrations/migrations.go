// Package migrations owns the database schema: numbered SQL files embedded
// in the binary, applied by pressly/goose through one function that
// `runledger migrate`, `serve`, `dev` and the tests all use.
//
// Each file starts with `-- +goose Up` and runs in its own transaction
// unless it says `-- +goose NO TRANSACTION` (for statements PostgreSQL
// refuses inside a transaction, such as CREATE INDEX CONCURRENTLY).
// Applied versions are recorded in goose's table, goose_db_version.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// lockID is the session advisory lock that serialises migrators when several
// replicas start at once. It is the key today's hand-written runner took
// ("runl"), so an old and a new binary starting together also wait for each
// other.
const lockID = 0x72756e6c

// lockProbes is how many times, a second apart, a migrator tries the lock
// before giving up (an hour: long enough for a CREATE INDEX CONCURRENTLY on a
// large table; the caller's context can end the wait sooner).
const lockProbes = 3600

// Apply brings the database up to date and returns the names of the
// migrations it applied (none when it was up to date). A database last
// migrated by the hand-written runner (table schema_migrations) is adopted
// first. On failure it returns the names applied before the failing
// migration and an error naming it.
func Apply(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return applyFS(ctx, pool, files, 0)
}

// ApplyUpTo is Apply stopping after version: for tests that build a
// database as an older release left it, then upgrade it.
func ApplyUpTo(ctx context.Context, pool *pgxpool.Pool, version int64) ([]string, error) {
	return applyFS(ctx, pool, files, version)
}

// applyFS applies the migrations of fsys (up to version, all when 0);
// Apply passes the embedded files, tests pass their own.
func applyFS(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, version int64) ([]string, error) {
	db := stdlib.OpenDBFromPool(pool) // closing db leaves the pool open
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, lockProbes))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if err := adoptLegacy(ctx, db, locker); err != nil {
		return nil, fmt.Errorf("migrate: adopt schema_migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var results []*goose.MigrationResult
	if version > 0 {
		results, err = provider.UpTo(ctx, version)
	} else {
		results, err = provider.Up(ctx)
	}
	if partial, ok := errors.AsType[*goose.PartialError](err); ok {
		return names(partial.Applied), fmt.Errorf("migrate %s: %w", path.Base(partial.Failed.Source.Path), partial.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return names(results), nil
}

func names(results []*goose.MigrationResult) []string {
	var out []string
	for _, r := range results {
		out = append(out, path.Base(r.Source.Path))
	}
	return out
}
