package migrations_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/migrations"
)

// syncBuffer is a log sink safe for the migrator and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A migration whose table lock is held elsewhere fails on the session's
// short lock_timeout, says so in the log, and is tried again until the lock
// comes: it neither gives up nor waits in the lock queue (where every later
// query on the table would queue behind it). Each migration's start and end
// are logged.
func TestMigrationWaitingForALockRetriesAndLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	admin := pgtest.Pool(t, url)
	if _, err := migrations.Apply(ctx, admin); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "100"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE runs IN ACCESS SHARE MODE`); err != nil { // a reader in a long transaction
		t.Fatal(err)
	}
	const file = "9003_alter_runs.sql"
	fsys := withFile(t, file, "-- +goose Up\nALTER TABLE runs ADD COLUMN lock_test int;\n")
	var logs syncBuffer
	type result struct {
		applied []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		applied, err := migrations.ApplyFSWith(ctx, pool, fsys, migrations.Options{
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), RetryWait: 50 * time.Millisecond})
		done <- result{applied, err}
	}()
	for deadline := time.Now().Add(20 * time.Second); strings.Count(logs.String(), "migration waits for a lock") < 2; time.Sleep(10 * time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("Apply = %v, %v while the table was locked; want it to wait and retry", r.applied, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged after 20s:\n%s", logs.String())
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !slices.Equal(r.applied, []string{file}) {
		t.Fatalf("Apply = %v, %v; want [%s] once the lock was released", r.applied, r.err, file)
	}
	for _, want := range []string{`msg="migration started" migration=` + file, `msg="migration applied" migration=` + file + ` duration=`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
