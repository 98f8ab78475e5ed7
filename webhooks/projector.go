package webhooks

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
)

// ConsumerGroup is the webhooks' consumer group over the log.
const ConsumerGroup = "webhooks"

// ProjectorOptions configure a Projector.
type ProjectorOptions struct {
	// PollInterval is the longest a caught-up group waits before asking
	// again (default 1s); Wake asks sooner.
	PollInterval time.Duration
	// BatchSize is the events per transaction (default 100).
	BatchSize int
	// Now is the clock that stamps new deliveries (default time.Now).
	Now func() time.Time
	// OnCommitted is called after a batch that held events committed (the
	// sender's wake-up).
	OnCommitted func()
	Logger      *slog.Logger
}

// Projector is the consumer group that turns each event of a subscribed
// type into one delivery per subscribed, enabled endpoint of its business.
// The deliveries are inserted through the transaction that delivered the
// event and moves the group's offset, so each is created exactly once
// (and the (event, endpoint) key makes a redelivery harmless anyway).
type Projector struct {
	router *message.Router
	opts   ProjectorOptions
	wake   chan struct{}
	errors int
}

// NewProjector builds the consumer group on pool (its transactions hold an
// xid for the batch only, like the read models').
func NewProjector(pool *pgxpool.Pool, opts ProjectorOptions) (*Projector, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(opts.Logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return nil, err
	}
	p := &Projector{router: router, opts: opts, wake: make(chan struct{}, 1)}
	ackDeadline := 10 * time.Second
	sub, err := wsql.NewSubscriber(limitedBeginner{wsql.BeginnerFromPgx(pool)}, wsql.SubscriberConfig{
		ConsumerGroup:  ConsumerGroup,
		PollInterval:   opts.PollInterval,
		ResendInterval: 50 * time.Millisecond,
		AckDeadline:    &ackDeadline,
		BackoffManager: p,
		SchemaAdapter:  projections.EventsSchema{BatchSize: opts.BatchSize},
		OffsetsAdapter: projections.OffsetsAdapter(),
	}, wlog)
	if err != nil {
		return nil, fmt.Errorf("webhooks: subscriber: %w", err)
	}
	router.AddConsumerHandler(ConsumerGroup, projections.Topic, sub, p.handle)
	return p, nil
}

// Run runs the consumer group until ctx is cancelled.
func (p *Projector) Run(ctx context.Context) error { return p.router.Run(ctx) }

// Running is closed once the group is subscribed.
func (p *Projector) Running() chan struct{} { return p.router.Running() }

// Close stops the group, waiting for its batch in flight.
func (p *Projector) Close() error { return p.router.Close() }

// Wake tells the group that the log holds new events.
func (p *Projector) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// handle inserts rec's deliveries through the batch's transaction.
func (p *Projector) handle(msg *message.Message) error {
	wtx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return errors.New("webhooks: message has no subscriber transaction")
	}
	pt, ok := wtx.(*wsql.PgxTx)
	if !ok {
		return errors.New("webhooks: subscriber transaction is not pgx")
	}
	rec, err := projections.RecordedFromMessage(msg)
	if err != nil { // the read models record it as poison; nothing to tell anyone
		p.opts.Logger.Error("webhooks: skipped an event that does not decode", "event_id", msg.UUID, "err", err)
		return nil
	}
	ctx := msg.Context()
	pl, ok, err := payloadFor(ctx, rec, previousFromTx(pt.Tx))
	if err != nil || !ok {
		return err
	}
	body, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	return insertDeliveries(ctx, pt.Tx, rec, pl.Type, body, p.opts.Now())
}

// insertDeliveries creates one delivery of body for each enabled endpoint of
// rec's business subscribed to typ and registered before rec happened (a
// group catching up on old events tells no endpoint of its past), due at once.
func insertDeliveries(ctx context.Context, tx pgx.Tx, rec eventstore.Recorded, typ string, body []byte, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, business_id, event_id, position, event_type,
			payload, next_attempt_at, created_at, updated_at)
		SELECT gen_random_uuid(), e.id, e.business_id, $2, $3, $4, $5, $6, $6, $6
		FROM webhook_endpoints e WHERE e.business_id = $1 AND NOT e.disabled AND $4 = ANY (e.events) AND e.created_at <= $7
		ON CONFLICT (event_id, endpoint_id) DO NOTHING`, rec.BusinessID, rec.EventID, rec.Position, typ, string(body), now, rec.OccurredAt)
	if err != nil {
		return fmt.Errorf("webhooks: deliveries of event %d: %w", rec.Position, err)
	}
	return nil
}

// HandleError implements wsql.BackoffManager: after a committed batch the
// sender is woken and the next query is at once; a caught-up group waits
// for Wake or PollInterval; a failed query backs off up to 2 s.
func (p *Projector) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	switch {
	case err != nil:
		p.errors++
		p.opts.Logger.Warn("webhooks: consumer group query failed; retrying", "consecutive", p.errors, "err", err)
		return min(50*time.Millisecond<<min(p.errors-1, 6), 2*time.Second)
	case !noMsg:
		p.errors = 0
		if p.opts.OnCommitted != nil {
			p.opts.OnCommitted()
		}
		return 0
	}
	p.errors = 0
	timer := time.NewTimer(p.opts.PollInterval)
	defer timer.Stop()
	select {
	case <-p.wake:
	case <-timer.C:
	}
	return 0
}

// limitedBeginner gives each batch the session limits of a projector
// transaction: a frozen replica's batch is ended by PostgreSQL and its
// xid released, and no lock or statement waits for long.
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
		// are applied again; and a delivery already claimed was flushed
		// with (after) the batch that made it.
		_, err = pt.Tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true), set_config('lock_timeout', '500ms', true),
			set_config('statement_timeout', '3s', true), set_config('idle_in_transaction_session_timeout', '2s', true)`)
		if err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	return tx, nil
}
