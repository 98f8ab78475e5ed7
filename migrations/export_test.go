package migrations

import (
	"context"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ApplyFS is applyFS for the external tests: Apply's code path over any FS.
func ApplyFS(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) ([]string, error) {
	return applyFS(ctx, pool, fsys, 0, Options{})
}

// ApplyFSWith is ApplyFS with options.
func ApplyFSWith(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, opts Options) ([]string, error) {
	return applyFS(ctx, pool, fsys, 0, opts)
}

// Files is the embedded migrations, for the tests' legacy runner.
var Files = files
