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

// This file is where the consumer groups meet watermill-sql's subscriber.
// Its interfaces are public, but what we build on them relies on how
// watermill-sql v4.1.2's Subscriber uses them (pinned, where a test can, by
// TestOffsetsTableAsWatermillWritesIt):
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
//  3. A failed Commit is logged, not passed to HandleError: the group
//     remembers it (group.failed sets retrySoon) for the next HandleError.
//  4. When its context ends (the ack deadline, a stop) the subscriber ends
//     the transaction without waiting for a handler still writing through
//     it: batch's mutex makes the end wait for the handler's statement.
//  5. A read whose rows all have Row.Offset 0 counts as empty: Row.Offset is
//     the event's position, which starts at 1.

// ackDeadline bounds how long a batch waits for its handler (watermill's
// AckDeadline).
const ackDeadline = 10 * time.Second

// newRouter is a watermill router logging through logger (watermill's info
// lines at debug level).
func newRouter(logger *slog.Logger) (*message.Router, error) {
	return message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermillLogger(logger))
}

func watermillLogger(logger *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}

// newSubscriber is consumer group's subscriber of the log: its transactions
// come from beginner, its waits from backoff.
func newSubscriber(beginner wsql.Beginner, group string, poll time.Duration, backoff wsql.BackoffManager, schema EventsSchema, logger *slog.Logger) (*wsql.Subscriber, error) {
	deadline := ackDeadline
	return wsql.NewSubscriber(beginner, wsql.SubscriberConfig{
		ConsumerGroup:  group,
		PollInterval:   poll,
		ResendInterval: 50 * time.Millisecond,
		AckDeadline:    &deadline,
		BackoffManager: backoff,
		SchemaAdapter:  schema,
		OffsetsAdapter: OffsetsAdapter(),
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
// of a projector batch.
type limitedBeginner struct{ wsql.Beginner }

// BeginTx implements wsql.Beginner.
func (b limitedBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if pt, ok := tx.(*wsql.PgxTx); ok {
		// Like the read models' batches, a batch does not wait for the WAL
		// flush: a crash that loses it loses its offset too, so its events
		// are handled again.
		_, err = pt.Tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true), set_config('lock_timeout', '500ms', true),
			set_config('statement_timeout', '3s', true), set_config('idle_in_transaction_session_timeout', '2s', true)`)
		if err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	return tx, nil
}

// handle hands one delivered event to the Consumer's handler, in the
// transaction that delivered it (behaviour 1). An event that does not
// decode is logged and skipped: the read models record it as poison.
func (c *Consumer) handle(msg *message.Message) error {
	wtx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return fmt.Errorf("consumer %s: message has no subscriber transaction", c.opts.Group)
	}
	pt, ok := wtx.(*wsql.PgxTx)
	if !ok {
		return fmt.Errorf("consumer %s: subscriber transaction is not pgx", c.opts.Group)
	}
	rec, err := RecordedFromMessage(msg)
	if err != nil {
		c.opts.Logger.Error("consumer skipped an event that does not decode", "group", c.opts.Group, "event_id", msg.UUID, "err", err)
		return nil
	}
	return c.handler.Handle(msg.Context(), pt.Tx, rec)
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
