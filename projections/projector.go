package projections

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/internal/ratelog"
)

// Options configure a Projector. Zero values take the defaults.
type Options struct {
	// Projections to run; all when empty.
	Projections []string
	// PollInterval is the longest a caught-up consumer waits before asking
	// again (default 1s); Wake and the Feed wake it sooner.
	PollInterval time.Duration
	// BatchSize is the number of events per subscriber transaction (default 100).
	BatchSize int
	// Linger is how long a group waits before its next read when wake-ups
	// came while its batch ran (under load), so that read takes more events
	// at once: a read and a batch cost about the same for 20 events as for
	// 40. It adds at most that much to the projection lag, and only under
	// load: a caught-up group reads as soon as it is woken (default 2ms;
	// negative: none).
	Linger time.Duration
	// MaxRetries is how many times an event is tried before it is recorded as
	// poison and skipped (default 3).
	MaxRetries int
	// LockTimeout bounds the wait for the group's offset row (another
	// replica's batch holds it) and for read-model rows (default 500ms); the
	// batch then retries, so a stalled holder cannot stop the group.
	LockTimeout time.Duration
	// StatementTimeout bounds each statement of a batch (default 3s).
	StatementTimeout time.Duration
	// IdleInTransactionTimeout makes PostgreSQL end a batch whose process
	// stops talking mid-transaction (a frozen replica), releasing its locks
	// and its hold on the log's visibility horizon (default 2s).
	IdleInTransactionTimeout time.Duration
	Logger                   *slog.Logger
	Metrics                  *Metrics
	// Feed, if set, receives every committed batch (and tells the groups
	// what other replicas applied).
	Feed *feed.Feed[RunRow]
	// NotifyChannel, if set, is the LISTEN/NOTIFY channel on which each
	// committed batch is told to the other replicas; Origin names this
	// replica in those notifications.
	NotifyChannel, Origin string
	// OnSubscribed, if set, is called once every consumer group has
	// subscribed (its offset row exists and its first read is under way).
	OnSubscribed func()

	logs *ratelog.Limiter
}

func (o *Options) setDefaults() {
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	switch {
	case o.Linger == 0:
		o.Linger = 2 * time.Millisecond
	case o.Linger < 0:
		o.Linger = 0
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 3
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 500 * time.Millisecond
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 3 * time.Second
	}
	if o.IdleInTransactionTimeout <= 0 {
		o.IdleInTransactionTimeout = 2 * time.Second
	}
	if len(o.Projections) == 0 {
		o.Projections = Names
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.logs = ratelog.New(o.Logger, time.Second)
}

// Metrics are the projector's Prometheus collectors.
type Metrics struct {
	Applied  *prometheus.CounterVec
	Poisoned *prometheus.CounterVec
	// Queries counts the consumer groups' reads of the log by result:
	// events (something to apply), empty (caught up) or error.
	Queries *prometheus.CounterVec
}

// NewMetrics creates the projector's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_projection_events_applied_total",
			Help: "Events handled by each projection."}, []string{"projection"}),
		Poisoned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_projection_events_poisoned_total",
			Help: "Events a projection could not apply after retries, recorded in projection_poison and skipped."}, []string{"projection"}),
		Queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_projection_queries_total",
			Help: "Reads of the log by each projection, by result: events, empty (caught up) or error."}, []string{"projection", "result"}),
	}
	reg.MustRegister(m.Applied, m.Poisoned, m.Queries)
	return m
}

// Projector runs the projections as watermill consumer groups on the
// events topic. Its one lifecycle is Run.
type Projector struct {
	router       *message.Router
	groups       []*group
	onSubscribed func()
	// stop is closed when Run's context ends: the groups' waits and
	// batches, and the horizon watcher, end with it.
	stop     chan struct{}
	stopOnce sync.Once
}

// NewProjector wires a watermill router with one subscriber (consumer group)
// per projection; each subscriber's transactions are the group's batches.
func NewProjector(pool *pgxpool.Pool, opts Options) (*Projector, error) {
	opts.setDefaults()
	router, err := newRouter(opts.Logger)
	if err != nil {
		return nil, err
	}
	p := &Projector{router: router, stop: make(chan struct{}), onSubscribed: opts.OnSubscribed}
	hz := newHorizon(pool, p.stop)
	for _, name := range opts.Projections {
		proj, err := byName(name)
		if err != nil {
			return nil, err
		}
		g := newGroup(proj, beginnerFromPgx(pool), opts)
		g.stop, g.horizon = p.stop, hz
		p.groups = append(p.groups, g)
		sub, err := newSubscriber(g, name, opts.PollInterval, g, EventsSchema{BatchSize: opts.BatchSize}, "", opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("projection %s: subscriber: %w", name, err)
		}
		router.AddConsumerHandler(name, Topic, sub, g.handle)
	}
	for _, g := range p.groups {
		for _, o := range p.groups {
			if o != g {
				g.siblings = append(g.siblings, o)
			}
		}
	}
	return p, nil
}

// Run runs the projections until ctx ends, then waits for the batches in
// flight and returns nil; it returns an error if they stop while ctx is
// live. A Projector runs once.
func (p *Projector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.router.Running():
			if p.onSubscribed != nil {
				p.onSubscribed()
			}
		case <-ctx.Done():
		}
		<-ctx.Done()
		p.stopOnce.Do(func() { close(p.stop) })
	}()
	return runRouter(ctx, p.router, "projector")
}

// Wake tells every consumer group that the log holds an event at position
// (this replica just appended it, or another said so): a caught-up group
// asks for it at once instead of at its next poll.
func (p *Projector) Wake(position int64) {
	for _, g := range p.groups {
		g.notify(position)
	}
}
