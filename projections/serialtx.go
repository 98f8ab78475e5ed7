package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"sync"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// errTxFinished is returned to a handler whose subscriber transaction was
// already committed or rolled back (the subscriber stopped waiting for it).
var errTxFinished = errors.New("subscriber transaction already finished")

// serialBeginner gives the watermill subscriber transactions that it and a
// handler cannot use at the same moment. The subscriber finishes its
// transaction as soon as its context ends, without waiting for the handler
// that is still writing through it (TxFromContext); on one pgx connection
// that is a data race. Here the finish waits for the handler's statement,
// and a handler that comes too late is refused.
//
// It also flushes the handler's deferred read-model writes (pendingWrites)
// before the subscriber writes its offset or commits.
type serialBeginner struct {
	wsql.Beginner
	table string
	cache *rowCache
}

func (b serialBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	// Read models are rebuildable and the offset commits with them, so a
	// crash that loses the last projector commits only replays those events:
	// no need to wait for the WAL flush.
	if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return &serialTx{inner: tx, pending: newPendingWrites(b.table, b.cache)}, nil
}

type serialTx struct {
	mu       sync.Mutex
	inner    wsql.Tx
	finished bool
	pending  *pendingWrites
}

// ExecContext runs the subscriber's statements (its offset ack), after the
// deferred read-model writes, so both land in the same transaction.
func (t *serialTx) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.flushLocked(ctx); err != nil {
		return nil, err
	}
	return t.inner.ExecContext(ctx, query, args...)
}

func (t *serialTx) flushLocked(ctx context.Context) error {
	if t.finished {
		return nil
	}
	pt, ok := t.inner.(*wsql.PgxTx)
	if !ok {
		return errors.New("subscriber transaction is not pgx")
	}
	return t.pending.flush(ctx, pt.Tx)
}

func (t *serialTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inner.QueryContext(ctx, query, args...)
}

func (t *serialTx) Commit() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.flushLocked(context.Background()); err != nil {
		t.finished = true
		return errors.Join(err, t.inner.Rollback())
	}
	t.finished = true
	return t.inner.Commit()
}

func (t *serialTx) Rollback() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.finished = true
	return t.inner.Rollback()
}

// withTx runs fn on the pgx transaction that delivered msg, and the writes
// deferred in it, holding it for the duration.
func withTx(msg *message.Message, fn func(pgx.Tx, *pendingWrites) error) error {
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return errors.New("message has no subscriber transaction")
	}
	st, ok := tx.(*serialTx)
	if !ok {
		return errors.New("subscriber transaction is not serialised")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finished {
		return errTxFinished
	}
	pt, ok := st.inner.(*wsql.PgxTx)
	if !ok {
		return errors.New("subscriber transaction is not pgx")
	}
	return fn(pt.Tx, st.pending)
}
