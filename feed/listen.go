package feed

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
)

// Topic is what a Listener does with one channel.
type Topic struct {
	// Notify handles one notification's payload.
	Notify func(ctx context.Context, payload string) error
	// Resync, when set, runs after every (re)connect, once the channel is
	// listened on: what was sent while the listener was away is lost, so it
	// re-reads what those notifications would have told. q is the
	// listening connection.
	Resync func(ctx context.Context, q Querier) error
}

// Listener brings other replicas' notifications to this replica: it LISTENs
// on a connection of its own (re-established after any loss, e.g. a
// pg_terminate_backend) to every channel given a Topic, and hands each
// payload to its topic. After every (re)connect each topic resyncs, since
// notifications sent while it was away are lost.
type Listener struct {
	// Connect opens the listening connection.
	Connect func(ctx context.Context) (*pgx.Conn, error)
	Logger  *slog.Logger
	Metrics *Metrics // may be nil

	topics map[string]Topic
}

// Handle sets the topic of channel; call it before Run.
func (l *Listener) Handle(channel string, t Topic) {
	if l.topics == nil {
		l.topics = map[string]Topic{}
	}
	l.topics[channel] = t
}

// Run listens until ctx ends, then returns nil. It returns early only when
// it cannot listen at all (no Connect, no topic).
func (l *Listener) Run(ctx context.Context) error {
	if len(l.topics) == 0 {
		return errors.New("change feed listener: no topic")
	}
	ln := &pgxlisten.Listener{Connect: l.Connect, ReconnectDelay: 250 * time.Millisecond,
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				l.Logger.Warn("change feed listener", "err", err)
			}
		}}
	for channel, t := range l.topics {
		ln.Handle(channel, topicHandler{channel: channel, topic: t, metrics: l.Metrics})
	}
	err := ln.Listen(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// topicHandler adapts a Topic to pgxlisten.
type topicHandler struct {
	channel string
	topic   Topic
	metrics *Metrics
}

// HandleNotification counts the notification and hands it to the topic.
func (h topicHandler) HandleNotification(ctx context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	if h.metrics != nil {
		h.metrics.Notifications.WithLabelValues(h.channel).Inc()
	}
	return h.topic.Notify(ctx, n.Payload)
}

// HandleBacklog runs after each (re)connect, once LISTEN is in place.
func (h topicHandler) HandleBacklog(ctx context.Context, _ string, conn *pgx.Conn) error {
	if h.topic.Resync == nil {
		return nil
	}
	return h.topic.Resync(ctx, conn)
}
