package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// adoptLegacy hands a database migrated by the hand-written runner over to
// goose: the versions recorded in schema_migrations are written to goose's
// version table, so goose applies only what is newer. It runs once, when
// schema_migrations exists and goose's table does not, under the same lock
// as the migrations, and in one transaction, so replicas starting together
// adopt exactly once.
//
// schema_migrations is left in place and no longer written: its rows keep
// the original applied_at times, and a previous binary rolled back onto the
// database still finds recorded every migration it had applied itself (so it
// starts, when the newer migrations are compatible with its code, instead of
// re-running 0001). It can be dropped by hand once no older binary will run.
func adoptLegacy(ctx context.Context, db *sql.DB, locker lock.SessionLocker) (retErr error) {
	// Cheap check first, so that every later start takes no extra lock.
	if needed, err := needsAdoption(ctx, db); err != nil || !needed {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := locker.SessionLock(ctx, conn); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer func() {
		if err := locker.SessionUnlock(context.WithoutCancel(ctx), conn); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("unlock: %w", err))
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Checked again under the lock: another replica may have adopted meanwhile.
	if needed, err := needsAdoption(ctx, tx); err != nil || !needed {
		return err
	}
	versions, err := legacyVersions(ctx, tx)
	if err != nil {
		return err
	}
	store, err := database.NewStore(goose.DialectPostgres, goose.DefaultTablename)
	if err != nil {
		return err
	}
	if err := store.CreateVersionTable(ctx, tx); err != nil {
		return fmt.Errorf("create %s: %w", store.Tablename(), err)
	}
	// Version 0 is the row goose itself writes when it creates its table.
	for _, v := range append([]int64{0}, versions...) {
		if err := store.Insert(ctx, tx, database.InsertRequest{Version: v}); err != nil {
			return fmt.Errorf("record version %d: %w", v, err)
		}
	}
	return tx.Commit()
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// needsAdoption reports whether schema_migrations exists and goose's version
// table does not (both looked up on the search path).
func needsAdoption(ctx context.Context, q querier) (bool, error) {
	var needed bool
	err := q.QueryRowContext(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL AND to_regclass($1) IS NULL`,
		goose.DefaultTablename).Scan(&needed)
	if err != nil {
		return false, fmt.Errorf("look for schema_migrations: %w", err)
	}
	return needed, nil
}

func legacyVersions(ctx context.Context, tx *sql.Tx) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	var versions []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		versions = append(versions, v)
	}
	return versions, rows.Err()
}
