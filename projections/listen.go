package projections

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
	"github.com/prometheus/client_golang/prometheus"
)

// The LISTEN/NOTIFY channels replicas share.
const (
	// ChangesChannel carries each committed projector batch (see encodeChange).
	ChangesChannel = "runledger_changes"
	// AppendsChannel carries the last position of each committed append
	// statement, so every replica's projector wakes for it.
	AppendsChannel = "runledger_appends"
)

// FeedMetrics count what a Listener receives.
type FeedMetrics struct {
	Notifications *prometheus.CounterVec
	Resyncs       prometheus.Counter
}

// NewFeedMetrics creates the listener's collectors and registers them with reg.
func NewFeedMetrics(reg prometheus.Registerer) *FeedMetrics {
	m := &FeedMetrics{
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_feed_notifications_total",
			Help: "Notifications received from other replicas, by channel."}, []string{"channel"}),
		Resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_feed_resyncs_total",
			Help: "Times this replica re-read every offset and told every subscriber to re-read (after a (re)connect or an overflow)."}),
	}
	reg.MustRegister(m.Notifications, m.Resyncs)
	return m
}

// Listener brings other replicas' changes to this replica: it LISTENs on a
// connection of its own (re-established after any loss, e.g. a
// pg_terminate_backend), publishes their projector batches to the Feed and
// wakes the Projector for their appends. After every (re)connect it re-reads
// the offsets and makes every subscriber re-read once, since notifications
// sent while it was away are lost.
type Listener struct {
	// Connect opens the listening connection.
	Connect   func(ctx context.Context) (*pgx.Conn, error)
	Feed      *Feed
	Projector *Projector // may be nil
	// Origin is this replica's name in notifications (its own are skipped).
	Origin  string
	Logger  *slog.Logger
	Metrics *FeedMetrics
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	ln := &pgxlisten.Listener{Connect: l.Connect, ReconnectDelay: 250 * time.Millisecond,
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				l.Logger.Warn("change feed listener", "err", err)
			}
		}}
	ln.Handle(ChangesChannel, changesHandler{l})
	ln.Handle(AppendsChannel, pgxlisten.HandlerFunc(func(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
		l.count(AppendsChannel)
		pos, err := strconv.ParseInt(n.Payload, 10, 64)
		if err == nil && l.Projector != nil {
			l.Projector.Wake(pos)
		}
		return err
	}))
	err := ln.Listen(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (l *Listener) count(channel string) {
	if l.Metrics != nil {
		l.Metrics.Notifications.WithLabelValues(channel).Inc()
	}
}

type changesHandler struct{ l *Listener }

// HandleNotification publishes another replica's batch.
func (h changesHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.l.count(ChangesChannel)
	origin, c, err := decodeChange(n.Payload)
	if err != nil || origin == h.l.Origin {
		return err
	}
	if c.Resync && h.l.Metrics != nil {
		h.l.Metrics.Resyncs.Inc()
	}
	h.l.Feed.Publish(c)
	return nil
}

// HandleBacklog runs after each (re)connect, once LISTEN is in place.
func (h changesHandler) HandleBacklog(ctx context.Context, _ string, conn *pgx.Conn) error {
	if h.l.Metrics != nil {
		h.l.Metrics.Resyncs.Inc()
	}
	if h.l.Projector != nil {
		h.l.Projector.Wake(0)
	}
	return h.l.Feed.Sync(ctx, conn)
}
