package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
)

// This file is where the consumer groups meet watermill-sql's subscriber:
// the read models' groups (group is the subscriber's Beginner and
// BackoffManager, batch its transaction) and Consumer (the webhooks' kind).
// watermill-sql's interfaces are public, but what we build on them relies on
// how watermill-sql v4.1.2's Subscriber uses them (pinned, where a test can,
// by TestOffsetsTableAsWatermillWritesIt and
// TestWatermillDoesNotPassAFailedCommitToHandleError in offsets_test.go):
//
//  1. Each read is one transaction from our Beginner (BeginTx): the SELECT
//     (QueryContext), the messages handed over one at a time, each carrying
//     that transaction in its context (TxFromContext), then the offset write
//     (ExecContext, AckMessageQuery) and Commit. With our offsets adapter,
//     the offset write is the only ExecContext of a batch and comes after
//     every message was handled: so a batch flushes its deferred read-model
//     writes there (batch.ExecContext), and the read model and the offset
//     commit together.
//  2. After each read the subscriber calls BackoffManager.HandleError and
//     sleeps for what it returns before the next read, in the same loop: so
//     a caught-up group waits inside HandleError (group.caughtUpWait,
//     Consumer.caughtUpWait), where a wake-up can end the wait at once, and
//     returns 0.
//  3. A failed Commit is not passed to HandleError (the next call has a nil
//     error), and a Commit error that wraps sql.ErrTxDone is not even logged:
//     the group remembers a failure itself (group.failed sets retrySoon), and
//     a batch cut short by a stop says ErrTxDone.
//  4. When its context ends (the ack deadline, a stop) the subscriber ends
//     the transaction without waiting for a handler still writing through
//     it: batch's mutex makes the end wait for the handler's statement.
//  5. A read whose rows all have Row.Offset 0 counts as empty: Row.Offset is
//     the event's position, which starts at 1.
//  6. The Rows our transaction's QueryContext returns are what it hands to
//     SchemaAdapter.UnmarshalMessage, row by row, before any message is
//     delivered. A read-model batch reads and decodes its events in
//     QueryContext and returns one row standing for all of them (page.go),
//     so a read is one message (TestAReadIsDeliveredAsOnePage).

// ackDeadline bounds how long a batch waits for its handler (watermill's
// AckDeadline).
const ackDeadline = 10 * time.Second

// newRouter is a watermill router logging through logger (watermill's info
// lines at debug level).
func newRouter(logger *slog.Logger) (*message.Router, error) {
	return message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermillLogger(logger))
}

// newSubscriber is consumer group's subscriber of the log: its transactions
// come from beginner, its waits from backoff.
// fromStartIf is ConsumerOptions.FromStartIf (empty for the read models).
func newSubscriber(beginner wsql.Beginner, group string, poll time.Duration, backoff wsql.BackoffManager, schema EventsSchema, fromStartIf string, logger *slog.Logger) (*wsql.Subscriber, error) {
	deadline := ackDeadline
	return wsql.NewSubscriber(beginner, wsql.SubscriberConfig{
		ConsumerGroup:  group,
		PollInterval:   poll,
		ResendInterval: 50 * time.Millisecond,
		AckDeadline:    &deadline,
		BackoffManager: backoff,
		SchemaAdapter:  schema,
		OffsetsAdapter: offsetsAdapter{DefaultPostgreSQLOffsetsAdapter: postgresOffsets, fromStartIf: fromStartIf},
	}, watermillLogger(logger))
}

func beginnerFromPgx(pool *pgxpool.Pool) wsql.Beginner { return wsql.BeginnerFromPgx(pool) }

// runRouter runs router until ctx ends. A router that stops while ctx is
// live (every subscription ended) is a failure, named after what.
func runRouter(ctx context.Context, router *message.Router, what string) error {
	err := router.Run(ctx)
	if err == nil && ctx.Err() == nil {
		err = errors.New("its subscriptions ended")
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s stopped: %w", what, err)
	}
	return nil
}

// limitedBeginner gives each transaction of a Consumer the session limits
// of a projector batch. customPlans makes its reads planned afresh each
// time: the read of a group that skips heartbeats must enter the log
// through the partial index that leaves them out, and a generic plan cached
// while the log was small (a fresh database, no statistics yet) may use the
// full (transaction_id, position) index instead and then filter every
// heartbeat past the offset on every read (seen in a short heartbeat load: a
// cached bitmap scan of events_transaction_position, 200 to 500 buffers a
// read instead of 4). Planned for its arguments and the log's size, the
// smaller partial index wins.
type limitedBeginner struct {
	wsql.Beginner
	customPlans bool
}

// BeginTx implements wsql.Beginner.
func (b limitedBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	limits := sessionLimits{lockTimeout: 500 * time.Millisecond, statementTimeout: 3 * time.Second, idleTimeout: 2 * time.Second,
		customPlans: b.customPlans}
	return limits.begin(ctx, b.Beginner, opts)
}

func planCacheMode(custom bool) string {
	if custom {
		return "force_custom_plan"
	}
	return "auto"
}

// handle hands one delivered event to the Consumer's handler, in the
// transaction that delivered it (behaviour 1). An event that does not
// decode is logged and skipped: the read models record it as poison.
func (c *Consumer) handle(msg *message.Message) error {
	wtx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return fmt.Errorf("consumer %s: message has no subscriber transaction", c.opts.Group)
	}
	pt, ok := wtx.(*pgxTx)
	if !ok {
		return fmt.Errorf("consumer %s: subscriber transaction is not pgx", c.opts.Group)
	}
	rec, err := RecordedFromMessage(msg)
	if err != nil {
		c.opts.Logger.Error("consumer skipped an event that does not decode", "group", c.opts.Group, "event_id", msg.UUID, "err", err)
		return nil
	}
	return c.handler.Handle(msg.Context(), pt.tx, rec)
}

// HandleError implements wsql.BackoffManager (behaviour 2): after a batch
// that held events, OnCommitted is called and the next read is at once; a
// caught-up group waits for Wake or PollInterval; a failed read backs off
// up to 2 s.
func (c *Consumer) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	switch {
	case err != nil:
		c.errors++
		c.opts.Logger.Warn("consumer group query failed; retrying", "group", c.opts.Group, "consecutive", c.errors, "err", err)
		return backoff(c.errors)
	case !noMsg:
		c.errors = 0
		if c.opts.OnCommitted != nil {
			c.opts.OnCommitted()
		}
		return 0
	}
	c.errors = 0
	c.caughtUpWait()
	return 0
}

// The read models' groups (behaviours 1 to 4).

// BeginTx implements wsql.Beginner: every subscriber transaction is a batch,
// with the session limits of a projector transaction (see Options).
func (g *group) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	began := readSeq.Add(1)
	g.mu.Lock()
	g.readSignals, g.readBegan = g.signals, began // the read's snapshot comes after this
	g.mu.Unlock()
	limits := sessionLimits{lockTimeout: g.opts.LockTimeout, statementTimeout: g.opts.StatementTimeout,
		idleTimeout: g.opts.IdleInTransactionTimeout}
	inner, err := limits.begin(ctx, g.Beginner, opts)
	if err != nil {
		return nil, err
	}
	return &batch{g: g, inner: inner, tx: inner.tx, rows: newRowSet(g.proj, g.proj.name, g.cache), began: began}, nil
}

// handle applies the events of a delivered page through the batch that
// read them, resuming after those it already took if the page comes again.
// An event that does not decode is recorded as poison: it never will.
func (g *group) handle(msg *message.Message) error {
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return errors.New("message has no subscriber transaction")
	}
	b, ok := tx.(*batch)
	if !ok {
		return errors.New("subscriber transaction is not a batch")
	}
	if b.page == nil {
		return errors.New("message is not the page its batch read")
	}
	for {
		ev, ok := b.takeEvent()
		if !ok {
			return nil
		}
		if err := g.handleEvent(msg.Context(), b, ev); err != nil {
			if !errors.Is(err, errBatchDone) {
				b.fail(err) // the event was taken: the batch must not commit without it
			}
			return err
		}
	}
}

func (g *group) handleEvent(ctx context.Context, b *batch, ev pagedEvent) error {
	if ev.err != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.done {
			return errBatchDone
		}
		if perr := g.recordPoison(ctx, b.tx, ev.rec, ev.err); perr != nil {
			b.err = perr
		}
		return nil
	}
	if err := b.apply(ctx, ev.rec, Offset{TxID: ev.txID, Position: ev.rec.Position}); err != nil {
		return err
	}
	if g.opts.Metrics != nil {
		g.opts.Metrics.Applied.WithLabelValues(g.proj.name).Inc()
	}
	return nil
}

// HandleError implements wsql.BackoffManager: how long the subscriber waits
// before its next query.
// A caught-up group waits here, in caughtUpWait (behaviour 2), and a batch
// whose commit failed is retried after a pause (behaviour 3). A query that
// failed for the database's availability (unreachable, a lock not granted in
// time, …) is retried with a growing pause up to 2 s and logged at most once
// a second; a batch that failed on an event is retried at once, its events
// now suspects.
func (g *group) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	g.countQuery(noMsg, err)
	if err == nil && noMsg {
		g.mu.Lock()
		if g.retrySoon {
			g.retrySoon = false
			g.errors++
			pause := backoff(g.errors)
			g.mu.Unlock()
			return pause
		}
		g.errors = 0
		g.mu.Unlock()
		return g.caughtUpWait()
	}
	g.mu.Lock()
	if err == nil {
		// A batch committed. The next read comes at once if there is more
		// to read (a full read, or a batch to retry), after Linger if a
		// wake-up came since this read began (under load: the wait lets
		// more events gather for one read); else the group waits like a
		// caught-up one, for the next wake-up: a read now could find nothing
		// this one did not (it was a third of the reads under B1).
		g.errors, g.retryPause = 0, 0
		switch {
		case g.readAgain || g.retrySoon:
			g.mu.Unlock()
			return 0
		case g.signals != g.readSignals:
			g.mu.Unlock()
			return g.opts.Linger
		}
		g.mu.Unlock()
		return g.caughtUpWait()
	}
	defer g.mu.Unlock()
	kind, transient := classify(err)
	if !transient {
		g.errors = 0
		return 10 * time.Millisecond
	}
	g.errors++
	g.opts.logs.Log(context.Background(), slog.LevelWarn, g.proj.name+":"+string(kind), "projection query failed; retrying",
		"projection", g.proj.name, "consecutive", g.errors, "err", err)
	return backoff(g.errors)
}

var _ wsql.Tx = (*batch)(nil)

// QueryContext runs the subscriber's SELECT of the next events (which also
// locks the group's offset row) and reads them as the batch's page, which
// it returns as one row (behaviour 6).
func (b *batch) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rows, err := b.inner.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	if b.page, err = scanPage(rows); err != nil {
		return nil, err
	}
	return &pageRows{p: b.page}, nil
}

// ExecContext runs the subscriber's offset write (the batch's only
// ExecContext, after every message: behaviour 1) in one round trip with the
// deferred read-model writes before it and the notifications after it
// (batch.ackLocked); it refuses if the batch failed, so watermill rolls the
// batch back instead of moving the offset past its events.
func (b *batch) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, b.err
	}
	tag, err := b.ackLocked(ctx, query, args)
	if err != nil {
		b.err = err
		return nil, err
	}
	return wsql.PgxResult{CommandTag: tag}, nil
}

// Commit commits the batch, whose writes went with its ack; a failed or
// unacknowledged batch is rolled back instead and its error returned.
func (b *batch) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return stdsql.ErrTxDone
	}
	b.done = true
	if len(b.delivered) > 0 && !b.acked {
		// Watermill stopped waiting for the page (its ack deadline) and
		// commits without moving the offset: the read model must not move
		// either. The events come again in the next read.
		_ = b.inner.Rollback()
		b.g.failed(b, nil)
		if !b.stopping(nil) {
			b.g.opts.Logger.Warn("projection batch not acknowledged in time; rolled back to be read again", "group", b.g.proj.name,
				"events", len(b.delivered))
		}
		return fmt.Errorf("%w: the batch was not acknowledged", stdsql.ErrTxDone)
	}
	// Its writes and notifications went with its ack (ackLocked); a batch
	// that delivered nothing has none.
	err := b.err
	if err != nil {
		_ = b.inner.Rollback()
	} else if err = b.inner.Commit(); err == nil {
		b.g.committed(b)
		return nil
	}
	if b.stopping(err) {
		// Cut short by the stop: nothing was committed, the next start
		// applies the batch again, and its events are not suspects. Told
		// as a finished transaction (sql.ErrTxDone), which watermill does
		// not log as an error.
		b.g.failed(b, nil)
		b.g.opts.Logger.Debug("projection batch abandoned at stop", "group", b.g.proj.name, "err", err)
		return fmt.Errorf("%w: the projector is stopping: %v", stdsql.ErrTxDone, err)
	}
	b.g.failed(b, err)
	return err
}

// Rollback abandons the batch (watermill's, after a failed read or handler).
func (b *batch) Rollback() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return stdsql.ErrTxDone
	}
	b.done = true
	err := b.inner.Rollback()
	b.g.failed(b, b.err)
	return err
}
