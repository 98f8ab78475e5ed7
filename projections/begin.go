package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
)

// sessionLimits are the settings a subscriber transaction runs under, each
// local to the transaction.
type sessionLimits struct {
	lockTimeout, statementTimeout, idleTimeout time.Duration
	// customPlans sets plan_cache_mode to force_custom_plan.
	customPlans bool
}

// beginSQL is BEGIN with the limits set in the same round trip (one simple
// query, two statements): a batch costs one round trip less, and so does
// every read that finds nothing. The values are written as literals, which
// only durations (whole milliseconds) and two constants can be. Such a
// transaction does not wait for the WAL flush at commit: its work is a read
// model or a delivery record with its offset, and a crash that loses it
// loses the offset too, so its events are handled again.
func (l sessionLimits) beginSQL(opts *stdsql.TxOptions) (string, error) {
	begin := "BEGIN"
	if opts != nil {
		switch opts.Isolation {
		case stdsql.LevelDefault:
		case stdsql.LevelReadCommitted:
			begin += " ISOLATION LEVEL READ COMMITTED"
		case stdsql.LevelRepeatableRead:
			begin += " ISOLATION LEVEL REPEATABLE READ"
		case stdsql.LevelSerializable:
			begin += " ISOLATION LEVEL SERIALIZABLE"
		default:
			return "", fmt.Errorf("isolation level %s is not supported", opts.Isolation)
		}
		if opts.ReadOnly {
			begin += " READ ONLY"
		}
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }
	return begin + `; SELECT set_config('synchronous_commit', 'off', true), set_config('lock_timeout', '` + ms(l.lockTimeout) + `', true),
		set_config('statement_timeout', '` + ms(l.statementTimeout) + `', true),
		set_config('idle_in_transaction_session_timeout', '` + ms(l.idleTimeout) + `', true),
		set_config('plan_cache_mode', '` + planCacheMode(l.customPlans) + `', true)`, nil
}

// begin starts a subscriber transaction on beginner's connection pool.
func (l sessionLimits) begin(ctx context.Context, beginner wsql.Beginner, opts *stdsql.TxOptions) (*pgxTx, error) {
	conn, ok := beginner.(wsql.PgxBeginner)
	if !ok {
		return nil, errors.New("subscriber beginner is not pgx")
	}
	sql, err := l.beginSQL(opts)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: sql})
	if err != nil {
		return nil, err
	}
	return &pgxTx{tx: tx, ctx: ctx}, nil
}

// pgxTx is a pgx transaction as watermill-sql's Tx. Like wsql.PgxTx, it
// commits in the context it began in and rolls back even after that ended.
type pgxTx struct {
	tx  pgx.Tx
	ctx context.Context
}

// QueryContext implements wsql.Tx.
func (t *pgxTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	rows, err := t.tx.Query(ctx, query, args...)
	return wsql.PgxRows{Rows: rows}, err
}

// ExecContext implements wsql.Tx.
func (t *pgxTx) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	return wsql.PgxResult{CommandTag: tag}, err
}

// Commit implements wsql.Tx.
func (t *pgxTx) Commit() error { return t.tx.Commit(t.ctx) }

// Rollback implements wsql.Tx.
func (t *pgxTx) Rollback() error { return t.tx.Rollback(context.WithoutCancel(t.ctx)) }
