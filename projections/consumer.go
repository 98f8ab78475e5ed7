package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/eventstore"
)

// Handler is what a Consumer does with each event: it runs in the
// transaction of the batch that delivered the event, which also moves the
// group's offset past it, so what it writes through tx is written exactly
// once. An error rolls the batch back; its events come again.
type Handler interface {
	Handle(ctx context.Context, tx pgx.Tx, rec eventstore.Recorded) error
}

// ConsumerOptions configure a Consumer. Zero values take the defaults.
type ConsumerOptions struct {
	// Group names the consumer group (its row in the offsets table).
	Group string
	// PollInterval is the longest a caught-up group waits before asking
	// again (default 1s); Wake asks sooner.
	PollInterval time.Duration
	// BatchSize is the events per transaction (default 100).
	BatchSize int
	// SkipHeartbeats is for a group that never acts on a heartbeat: it reads
	// the other events only, and a log of heartbeats costs it nothing. Its
	// offset then moves on those events alone; measure its lag with
	// GroupLag(…, true).
	SkipHeartbeats bool
	// FromStartIf, if set, makes a new group (no offset row yet) start at
	// the log's head instead of its start, unless this SQL condition holds
	// when it first subscribes. For a group that owes nothing for events
	// before some state exists (webhooks: no delivery is owed for an event
	// older than every endpoint), so that deploying it on a long log does
	// not read the whole log first. A constant of the caller, never input.
	FromStartIf string
	// OnCommitted, if set, is called after each batch that held events
	// committed.
	OnCommitted func()
	Logger      *slog.Logger
}

// Consumer is a consumer group over the log whose handler is not a read
// model (the webhooks' deliveries): the same subscriber, order and
// exactly-once offset as the projector's groups, without their row sets,
// suspects and feed. Its transactions have a projector batch's limits: a
// frozen replica's batch is ended by PostgreSQL and its xid released, and no
// lock or statement waits for long.
type Consumer struct {
	router  *message.Router
	opts    ConsumerOptions
	handler Handler
	wake    chan struct{}
	errors  int
}

// NewConsumer builds the consumer group opts.Group on pool, handing each
// event to handler.
func NewConsumer(pool *pgxpool.Pool, handler Handler, opts ConsumerOptions) (*Consumer, error) {
	if opts.Group == "" {
		return nil, errors.New("consumer: no group name")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Consumer{opts: opts, handler: handler, wake: make(chan struct{}, 1)}
	router, err := newRouter(opts.Logger)
	if err != nil {
		return nil, err
	}
	c.router = router
	sub, err := newSubscriber(limitedBeginner{Beginner: beginnerFromPgx(pool), customPlans: opts.SkipHeartbeats}, opts.Group, opts.PollInterval, c, EventsSchema{BatchSize: opts.BatchSize, SkipHeartbeats: opts.SkipHeartbeats}, opts.FromStartIf, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: subscriber: %w", opts.Group, err)
	}
	router.AddConsumerHandler(opts.Group, Topic, sub, c.handle)
	return c, nil
}

// Run runs the consumer group until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	return runRouter(ctx, c.router, "consumer "+c.opts.Group)
}

// Wake tells the group that the log holds new events: a caught-up group
// asks at once instead of at its next poll.
func (c *Consumer) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// caughtUpWait is how long a caught-up group waits before asking again:
// until woken, at most PollInterval.
func (c *Consumer) caughtUpWait() {
	timer := time.NewTimer(c.opts.PollInterval)
	defer timer.Stop()
	select {
	case <-c.wake:
	case <-timer.C:
	}
}
