package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Projector.
type Options struct {
	// Projections to run; all when empty.
	Projections []string
	// PollInterval is how long a caught-up consumer waits before asking again (default 50ms).
	PollInterval time.Duration
	// BatchSize is the number of events per subscriber transaction (default 100).
	BatchSize int
	// MaxRetries before an event is recorded as poison and skipped (default 3).
	MaxRetries int
	Logger     *slog.Logger
	Metrics    *Metrics
}

// Metrics are the projector's Prometheus collectors.
type Metrics struct {
	Applied  *prometheus.CounterVec
	Poisoned *prometheus.CounterVec
}

// NewMetrics creates the projector's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_projection_events_applied_total",
			Help: "Events handled by each projection."}, []string{"projection"}),
		Poisoned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_projection_events_poisoned_total",
			Help: "Events a projection could not apply after retries, recorded in projection_poison and skipped."}, []string{"projection"}),
	}
	reg.MustRegister(m.Applied, m.Poisoned)
	return m
}

// Projector runs the projections as watermill consumer groups on the events topic.
type Projector struct {
	pool    *pgxpool.Pool
	router  *message.Router
	logger  *slog.Logger
	metrics *Metrics
}

// NewProjector wires a watermill router with one subscriber (consumer group) per projection.
func NewProjector(pool *pgxpool.Pool, opts Options) (*Projector, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 3
	}
	if len(opts.Projections) == 0 {
		opts.Projections = Names
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(opts.Logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return nil, err
	}
	p := &Projector{pool: pool, router: router, logger: opts.Logger, metrics: opts.Metrics}
	for _, name := range opts.Projections {
		proj, err := byName(name)
		if err != nil {
			return nil, err
		}
		cache := newRowCache()
		sub, err := wsql.NewSubscriber(serialBeginner{Beginner: wsql.BeginnerFromPgx(pool), table: name, cache: cache}, wsql.SubscriberConfig{
			ConsumerGroup:  name,
			PollInterval:   opts.PollInterval,
			ResendInterval: 50 * time.Millisecond,
			SchemaAdapter:  EventsSchema{BatchSize: opts.BatchSize},
			OffsetsAdapter: OffsetsAdapter(),
		}, wlog)
		if err != nil {
			return nil, fmt.Errorf("projection %s: subscriber: %w", name, err)
		}
		h := router.AddConsumerHandler(name, Topic, sub, p.handler(proj))
		h.AddMiddleware(
			p.poison(name), // outermost: after the retries give up, record and skip
			middleware.Retry{MaxRetries: opts.MaxRetries, InitialInterval: 20 * time.Millisecond,
				MaxInterval: time.Second, Multiplier: 2, Logger: wlog}.Middleware,
			middleware.Recoverer,
		)
	}
	return p, nil
}

// Run runs the projections until ctx is cancelled.
func (p *Projector) Run(ctx context.Context) error { return p.router.Run(ctx) }

// Running is closed once every consumer group is subscribed.
func (p *Projector) Running() chan struct{} { return p.router.Running() }

// Close stops the projections, waiting for in-flight batches.
func (p *Projector) Close() error { return p.router.Close() }

func (p *Projector) handler(proj projection) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, err := RecordedFromMessage(msg)
		if err != nil {
			return err
		}
		// No savepoint: an apply reads, decides in Go and writes one
		// statement, so a refusal (a gap, an undecodable event) leaves the
		// transaction clean for the poison record, and a failed write aborts
		// the whole batch, which is then redelivered. (Savepoints that write
		// would each take a subtransaction id; 100 per batch overflow
		// PostgreSQL's 64-entry subxid cache and slow every snapshot.)
		err = withTx(msg, func(tx pgx.Tx, live *pendingWrites) error { return proj.apply(msg.Context(), tx, proj.name, rec, live) })
		if err == nil && p.metrics != nil {
			p.metrics.Applied.WithLabelValues(proj.name).Inc()
		}
		return err
	}
}

// poison records a message that failed every retry in projection_poison, in
// the subscriber's transaction, and acknowledges it so the group moves on.
func (p *Projector) poison(group string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil || msg.Context().Err() != nil || errors.Is(err, errTxFinished) {
				return out, err
			}
			pos, _ := strconv.ParseInt(msg.Metadata.Get(metaPosition), 10, 64)
			insErr := withTx(msg, func(tx pgx.Tx, _ *pendingWrites) error {
				_, err := tx.Exec(msg.Context(), `INSERT INTO projection_poison (consumer_group, position, event_id, error)
					VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, group, pos, msg.UUID, err.Error())
				return err
			})
			if insErr != nil {
				return nil, errors.Join(err, insErr) // nacked: redelivered later
			}
			p.logger.Error("projection skipped a poison event", "projection", group, "position", pos,
				"event_id", msg.UUID, "err", err)
			if p.metrics != nil {
				p.metrics.Poisoned.WithLabelValues(group).Inc()
			}
			return nil, nil
		}
	}
}
