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
	"log/slog"
	"path"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/runledger/runledger/internal/advisory"
)

//go:embed *.sql
var files embed.FS

// lockProbes is how many times, a second apart, a migrator tries the lock
// before giving up (an hour: long enough for a CREATE INDEX CONCURRENTLY on a
// large table; the caller's context can end the wait sooner).
const lockProbes = 3600

// Options configure how migrations are applied.
type Options struct {
	// Logger, if set, receives each migration's start, and its end with its
	// duration, and each wait for a lock.
	Logger *slog.Logger
	// RetryWait is how long to wait before retrying a migration that failed
	// on its session's lock_timeout (default 1s). A migration that waits for
	// a table lock makes every later query on that table queue behind it, so
	// the caller's session gives it a short lock_timeout and it tries again,
	// letting the queue drain in between, until the lock comes or ctx ends.
	RetryWait time.Duration
}

// Apply brings the database up to date and returns the names of the
// migrations it applied (none when it was up to date). A database last
// migrated by the hand-written runner (table schema_migrations) is adopted
// first. On failure it returns the names applied before the failing
// migration and an error naming it.
//
// The migrations run with pool's session settings: its statement_timeout
// must allow a backfill across the whole log (serve gives them a pool of
// their own, without the requests' timeouts).
func Apply(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return applyFS(ctx, pool, files, 0, Options{})
}

// ApplyWith is Apply with opts: progress in the log, retries on lock timeouts.
func ApplyWith(ctx context.Context, pool *pgxpool.Pool, opts Options) ([]string, error) {
	return applyFS(ctx, pool, files, 0, opts)
}

// ApplyUpTo is Apply stopping after version: for tests that build a
// database as an older release left it, then upgrade it.
func ApplyUpTo(ctx context.Context, pool *pgxpool.Pool, version int64) ([]string, error) {
	return applyFS(ctx, pool, files, version, Options{})
}

// applyFS applies the migrations of fsys (up to version, all when 0), one at
// a time; Apply passes the embedded files, tests pass their own.
func applyFS(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, version int64, opts Options) ([]string, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryWait <= 0 {
		opts.RetryWait = time.Second
	}
	db := stdlib.OpenDBFromPool(pool) // closing db leaves the pool open
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(advisory.Migrate)), lock.WithLockTimeout(1, lockProbes))
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
	var applied []string
	for {
		next, err := nextPending(ctx, provider)
		if err != nil {
			return applied, fmt.Errorf("migrate: %w", err)
		}
		if next == nil || (version > 0 && next.Version > version) {
			return applied, nil
		}
		name := path.Base(next.Path)
		opts.Logger.Info("migration started", "migration", name)
		res, err := provider.UpByOne(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) { // another replica applied it meanwhile
			return applied, nil
		}
		if partial, ok := errors.AsType[*goose.PartialError](err); ok {
			name, err = path.Base(partial.Failed.Source.Path), partial.Err
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == lockNotAvailable {
			opts.Logger.Warn("migration waits for a lock; retrying", "migration", name, "err", err, "retry_in", opts.RetryWait.String())
			select {
			case <-ctx.Done():
				return applied, fmt.Errorf("migrate %s: %w", name, err)
			case <-time.After(opts.RetryWait):
			}
			continue
		}
		if err != nil {
			return applied, fmt.Errorf("migrate %s: %w", name, err)
		}
		name = path.Base(res.Source.Path)
		opts.Logger.Info("migration applied", "migration", name, "duration", res.Duration.Round(time.Millisecond).String())
		applied = append(applied, name)
	}
}

// lockNotAvailable is PostgreSQL's lock_timeout error (55P03).
const lockNotAvailable = "55P03"

// nextPending is the first migration not applied yet, or nil.
func nextPending(ctx context.Context, provider *goose.Provider) (*goose.Source, error) {
	status, err := provider.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range status {
		if st.State == goose.StatePending {
			return st.Source, nil
		}
	}
	return nil, nil
}
