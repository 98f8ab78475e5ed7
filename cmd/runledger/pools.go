package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// poolSpec is one connection pool of a process, sized and limited for its
// role. serve keeps the roles apart so that one cannot starve another: a
// burst of commands waiting on a lock cannot take the connections the
// projector and the reaper need to keep the read models and the runs honest.
type poolSpec struct {
	// name is the PostgreSQL application_name (seen in pg_stat_activity,
	// followed by ":" and the process id).
	name string
	// size is the pool's maximum; DATABASE_URL's pool_max_conns overrides
	// it for the commands pool only.
	size, minConns int32
	// statementTimeout and lockTimeout are the sessions' defaults (0: none).
	statementTimeout, lockTimeout time.Duration
	// idleInTransaction ends a session that stops talking mid-transaction.
	idleInTransaction time.Duration
	urlSizes          bool
}

// The pools of serve; the timeouts follow the request deadline.
func commandsPool(requestTimeout time.Duration) poolSpec {
	return poolSpec{name: "runledger-commands", size: 40, urlSizes: true, statementTimeout: requestTimeout,
		lockTimeout: min(2*time.Second, requestTimeout), idleInTransaction: 10 * time.Second}
}

func readsPool(requestTimeout time.Duration) poolSpec {
	// Kept open: a backend forked under load takes tens of milliseconds to
	// start, which a query should not wait for.
	return poolSpec{name: "runledger-reads", size: 16, minConns: 16, statementTimeout: requestTimeout,
		lockTimeout: min(2*time.Second, requestTimeout), idleInTransaction: 10 * time.Second}
}

// projectorPool serves the consumer groups, whose batches set their own
// tighter limits per transaction (projections.Options).
func projectorPool() poolSpec {
	return poolSpec{name: "runledger-projector", size: 4, minConns: 2, statementTimeout: 10 * time.Second,
		idleInTransaction: 10 * time.Second}
}

func reaperPool(requestTimeout time.Duration) poolSpec {
	return poolSpec{name: "runledger-reaper", size: 6, statementTimeout: requestTimeout,
		lockTimeout: min(2*time.Second, requestTimeout), idleInTransaction: 10 * time.Second}
}

// maintenancePool is serve's scheduled compaction's own: one batch at a time
// (two connections: the pass's lock and its statements), opened only when compaction
// is scheduled. Not the commands pool, whose request-sized statement timeout
// a batch of 50 runs' deletions can outlast and whose connections a command
// should never wait behind a maintenance job for; not the projector's or the
// reaper's, which keep the read models and the runs honest on time. Its
// statements may take a minute; its lock waits stay short, so a batch that
// meets a command's row lock fails and is tried again at the next tick
// rather than holding its own locks while it waits.
func maintenancePool() poolSpec {
	return poolSpec{name: "runledger-maintenance", size: 2, statementTimeout: time.Minute,
		lockTimeout: 2 * time.Second, idleInTransaction: time.Minute}
}

// opsPool is for the operations commands (migrate, rebuild, verify, audit),
// whose statements may rightly run long.
func opsPool(command string) poolSpec {
	return poolSpec{name: "runledger-" + command, size: 8, idleInTransaction: time.Minute}
}

// keepAlive notices a peer that vanished without closing the connection (a
// dead host, a dropped network path) within about 30 s instead of hours.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// openPool opens the pool of spec on url and checks that it answers.
func openPool(ctx context.Context, url string, spec poolSpec) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, errors.New("DATABASE_URL is not set (or use `runledger dev` for a local database)")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !spec.urlSizes || !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = spec.size
	}
	cfg.MinConns = min(spec.minConns, cfg.MaxConns)
	params := cfg.ConnConfig.RuntimeParams
	// The pid tells replicas on one host apart in pg_stat_activity.
	params["application_name"] = spec.name + ":" + strconv.Itoa(os.Getpid())
	for name, d := range map[string]time.Duration{"statement_timeout": spec.statementTimeout,
		"lock_timeout": spec.lockTimeout, "idle_in_transaction_session_timeout": spec.idleInTransaction} {
		if d > 0 {
			params[name] = strconv.FormatInt(d.Milliseconds(), 10)
		}
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	dialer := &net.Dialer{Timeout: cfg.ConnConfig.ConnectTimeout, KeepAliveConfig: keepAlive}
	cfg.ConnConfig.DialFunc = dialer.DialContext
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}
