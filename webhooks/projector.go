package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

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
// event and moves the group's offset (projections.Consumer), so each is
// created exactly once (and the (event, endpoint) key makes a redelivery
// harmless anyway).
type Projector struct {
	consumer *projections.Consumer
	now      func() time.Time
}

// NewProjector builds the consumer group on pool (its transactions hold an
// xid for the batch only, like the read models').
func NewProjector(pool *pgxpool.Pool, opts ProjectorOptions) (*Projector, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Projector{now: opts.Now}
	var err error
	p.consumer, err = projections.NewConsumer(pool, p, projections.ConsumerOptions{Group: ConsumerGroup,
		PollInterval: opts.PollInterval, BatchSize: opts.BatchSize, SkipHeartbeats: skipHeartbeats, FromStartIf: anyEndpoint, OnCommitted: opts.OnCommitted,
		Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	return p, nil
}

// Read is the statement, with its arguments, that the webhooks group reads
// the log with (for plan tests and measurements).
func Read() (string, []any, error) {
	return projections.ConsumerRead(ConsumerGroup, defaultBatch, skipHeartbeats)
}

// Lag measures how far the webhooks group is behind the log.
func Lag(ctx context.Context, q projections.Querier) (projections.Lag, error) {
	return projections.GroupLag(ctx, q, ConsumerGroup, skipHeartbeats)
}

// anyEndpoint: a delivery is owed only to an endpoint registered before
// the event, so the group's first subscription starts at the log's head
// when no endpoint exists yet (deployed on a year of log, it reads none of
// it), and at the log's start otherwise (nothing owed is skipped).
const anyEndpoint = `EXISTS (SELECT 1 FROM webhook_endpoints)`

// skipHeartbeats: no webhook is about a heartbeat (payloadFor), and they are
// most of the log, so the group does not read them. Its offset then moves on
// the other events alone; compaction, which waits for every group to pass a
// run's events, still sees it pass an ended run's (its end is not a
// heartbeat, and comes after them).
const skipHeartbeats = true

// defaultBatch is the events per transaction when ProjectorOptions say none.
const defaultBatch = 100

// Run runs the consumer group until ctx ends.
func (p *Projector) Run(ctx context.Context) error { return p.consumer.Run(ctx) }

// Wake tells the group that the log holds new events.
func (p *Projector) Wake() { p.consumer.Wake() }

// Handle inserts rec's deliveries through the batch's transaction tx
// (projections.Handler).
func (p *Projector) Handle(ctx context.Context, tx pgx.Tx, rec eventstore.Recorded) error {
	pl, ok, err := payloadFor(ctx, rec, previousFromTx(tx))
	if err != nil || !ok {
		return err
	}
	body, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	return insertDeliveries(ctx, tx, rec, pl.Type, body, p.now())
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
