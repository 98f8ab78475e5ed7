package advisory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Key is an advisory lock key (PostgreSQL's single bigint form).
type Key int64

// The keys, each the ASCII of its name. A key taken as a literal in SQL is
// pinned to its constant by a test next to that SQL.
const (
	// Migrate serialises migrators when several replicas start at once
	// (goose's session locker). It is the key the hand-written runner before
	// goose took, so an old and a new binary also wait for each other.
	Migrate Key = 0x72756e6c // "runl"
	// Rebuild is held by a read-model rebuild from start to end. The erasure
	// function of migration 0008 takes it too, as the literal
	// 32199620896058468 (a transaction lock): a rebuild's shadow tables
	// would bring an erased business back.
	Rebuild Key = 0x72656275696c64 // "rebuild"
	// Reaper lets one replica sweep silent runs at a time (the others skip
	// their turn; correctness never depends on it).
	Reaper Key = 0x7265617065 // "reape"
	// Compaction lets one replica run the scheduled compaction at a time:
	// two at once would pick the same runs, and the second's deletions
	// would find nothing left and fail.
	Compaction Key = 0x636f6d70616374 // "compact"
)

// Keys are all the keys by name (the collision test reads them).
var Keys = map[string]Key{"migrate": Migrate, "rebuild": Rebuild, "reaper": Reaper, "compaction": Compaction}

// unlockTimeout bounds an unlock, which may run after the holder's context
// ended (at shutdown): a database that does not answer cannot hold the
// process past it.
const unlockTimeout = 5 * time.Second

// Lock is a session advisory lock held by one connection taken from a pool.
type Lock struct {
	key  Key
	conn *pgxpool.Conn
}

// TryLock takes a connection from pool and tries key's session lock on it,
// without waiting. It returns the lock, or nil when another session holds it
// (the connection goes back to the pool), or the error; a connection whose
// attempt failed may hold the lock, so it is closed rather than pooled.
func TryLock(ctx context.Context, pool *pgxpool.Pool, key Key) (*Lock, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(key)).Scan(&got); err != nil {
		discard(conn)
		return nil, fmt.Errorf("advisory lock %#x: %w", int64(key), err)
	}
	if !got {
		conn.Release()
		return nil, nil
	}
	return &Lock{key: key, conn: conn}, nil
}

// Unlock releases the lock and gives its connection back to the pool. It
// runs even when ctx has ended (bounded by its own timeout). If the unlock
// fails, the session may still hold the lock, so the connection is closed
// instead (which releases it) rather than left in the pool, where it would
// hold the lock for as long as it lives; the error says why.
func (l *Lock) Unlock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	var released bool
	err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, int64(l.key)).Scan(&released)
	if err == nil && released {
		l.conn.Release()
		return nil
	}
	discard(l.conn)
	if err == nil {
		err = errors.New("the session did not hold it")
	}
	return fmt.Errorf("advisory unlock %#x: %w", int64(l.key), err)
}

// Holder returns the PostgreSQL backend (pid) that holds key's session
// lock, and 0 when none does.
func Holder(ctx context.Context, pool *pgxpool.Pool, key Key) (int, error) {
	var pid int
	err := pool.QueryRow(ctx, `SELECT coalesce((SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1), 0)`, int64(key)).Scan(&pid)
	return pid, err
}

// discard closes conn's session (ending any lock it holds) and takes it out
// of its pool.
func discard(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Hijack().Close(ctx)
}
