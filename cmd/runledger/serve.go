package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/internal/dbclock"
	"github.com/runledger/runledger/internal/lifecycle"
	"github.com/runledger/runledger/migrations"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/reaper"
	"github.com/runledger/runledger/runs"
	"github.com/runledger/runledger/webhooks"
)

// service is the wired graph of `serve`: pools, command runner, projector,
// reaper and HTTP server. Tests and `dev` reuse it.
type service struct {
	cfg    Config
	logger *slog.Logger
	// Each role has its own pool (see poolSpec): commands (appends and the
	// idempotency keys), reads (the API's queries), the projector and the
	// reaper, so that none can starve another.
	pool     *pgxpool.Pool
	reads    *pgxpool.Pool
	projPool *pgxpool.Pool
	reapPool *pgxpool.Pool
	// maintPool is the scheduled compaction's (nil when none is scheduled).
	maintPool *pgxpool.Pool
	// clock is the database's clock, which every decision of every replica uses.
	clock *dbclock.Clock
	lag   *projections.LagMonitor
	feed  *feed.Feed[projections.RunRow]
	// feedListener brings the other replicas' changes (LISTEN/NOTIFY).
	feedListener *feed.Listener
	origin       string
	batchSizes   prometheus.Histogram
	reg          *prometheus.Registry
	api          *api.Server
	projector    *projections.Projector
	reaper       *reaper.Reaper
	// The webhooks: endpoints (the API's), deliveries' consumer group, sender.
	webhookPool      *pgxpool.Pool
	webhookEndpoints *webhooks.Endpoints
	webhookProjector *webhooks.Projector
	webhookSender    *webhooks.Sender
	http             *http.Server
	listener         net.Listener
	// metricsListener serves /metrics when --metrics-addr is set.
	metricsListener net.Listener
}

// newService migrates (unless cfg.NoMigrate), connects, builds every part and
// binds the listen address; it returns an error naming what is misconfigured.
func newService(ctx context.Context, cfg Config, logger *slog.Logger) (*service, error) {
	policy, err := cfg.Policy()
	if err != nil {
		return nil, err
	}
	s := &service{cfg: cfg, logger: logger, reg: prometheus.NewRegistry()}
	// Token expiry is judged on the database's clock, measured below.
	auth, err := api.NewAuthenticator(cfg.AuthSecret, func() time.Time { return s.clock.Now() })
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if !cfg.NoMigrate {
		if err := migrate(ctx, cfg.DatabaseURL, logger); err != nil {
			return nil, err
		}
	}
	if err := s.openPools(ctx); err != nil {
		return nil, err
	}
	if err := s.syncClock(ctx); err != nil {
		s.closePools()
		return nil, err
	}
	if err := s.build(ctx, policy, auth); err != nil {
		s.closePools()
		return nil, err
	}
	return s, nil
}

// migrateLockTimeout is how long a migration waits for a table lock before
// it gives up and tries again a second later: while it waits, every query on
// that table queues behind it, so it must not wait for long.
const migrateLockTimeout = 3 * time.Second

// migrate applies the migrations on a connection pool of their own, without
// the requests' statement timeout (a backfill reads the whole log) and with a
// short lock timeout that migrations.ApplyWith retries, each migration's
// start and end in the log; the pool is closed before serving.
func migrate(ctx context.Context, url string, logger *slog.Logger) error {
	pool, err := openPool(ctx, url, poolSpec{name: "runledger-migrate", size: 4, lockTimeout: migrateLockTimeout,
		idleInTransaction: time.Minute})
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := migrations.ApplyWith(ctx, pool, migrations.Options{Logger: logger})
	if len(applied) > 0 {
		logger.Info("migrations applied", "migrations", applied)
	}
	return err
}

// syncClock measures this replica's offset to the database's clock before
// anything decides with it, and exports it.
func (s *service) syncClock(ctx context.Context) error {
	offset := prometheus.NewGauge(prometheus.GaugeOpts{Name: "runledger_clock_offset_seconds",
		Help: "The database's clock minus this replica's, as last measured; decisions use the database's."})
	uncertainty := prometheus.NewGauge(prometheus.GaugeOpts{Name: "runledger_clock_offset_uncertainty_seconds",
		Help: "Half the round trip of the offset's best measurement."})
	s.reg.MustRegister(offset, uncertainty)
	local := time.Now
	if skew := s.cfg.clockSkew; skew != 0 { // tests: a replica whose own clock is off
		local = func() time.Time { return time.Now().Add(skew) }
	}
	s.clock = dbclock.New(s.reads, dbclock.Options{Local: local, Logger: s.logger, OnMeasure: func(o, u time.Duration) {
		offset.Set(o.Seconds())
		uncertainty.Set(u.Seconds())
	}})
	return s.clock.Sync(ctx)
}

func (s *service) openPools(ctx context.Context) error {
	specs := []struct {
		dst  **pgxpool.Pool
		spec poolSpec
	}{
		{&s.pool, commandsPool(s.cfg.RequestTimeout)},
		{&s.reads, readsPool(s.cfg.RequestTimeout)},
		{&s.projPool, projectorPool()},
		{&s.reapPool, reaperPool(s.cfg.RequestTimeout)},
	}
	if s.cfg.CompactEndedBefore > 0 {
		specs = append(specs, struct {
			dst  **pgxpool.Pool
			spec poolSpec
		}{&s.maintPool, maintenancePool()})
	}
	for _, p := range specs {
		pool, err := openPool(ctx, s.cfg.DatabaseURL, p.spec)
		if err != nil {
			s.closePools()
			return err
		}
		*p.dst = pool
	}
	return nil
}

func (s *service) closePools() {
	for _, p := range []*pgxpool.Pool{s.pool, s.reads, s.projPool, s.reapPool, s.maintPool, s.webhookPool} {
		if p != nil {
			p.Close()
		}
	}
}

func (s *service) build(ctx context.Context, policy domain.Policy, auth *api.Authenticator) error {
	reg := s.reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.batchSizes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "runledger_append_batch_size",
		Help: "Commands appended per statement (group commit).", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}})
	reg.MustRegister(s.batchSizes)
	host, _ := os.Hostname()
	s.origin = fmt.Sprintf("%s:%d", host, os.Getpid())
	// The feed learns of committed projector batches (here, and through
	// LISTEN from the other replicas) and tells SSE streams and
	// read-your-writes waits; it starts from the committed offsets.
	s.feed = feed.New[projections.RunRow](projections.ReadOffsets)
	if err := s.feed.Sync(ctx, s.reads); err != nil {
		return err
	}
	var err error
	projOpts := projectorOptions(s.cfg.readLagBound(), s.logger, projections.NewMetrics(reg))
	projOpts.Feed, projOpts.NotifyChannel, projOpts.Origin = s.feed, feed.ChangesChannel, s.origin
	if s.projector, err = projections.NewProjector(s.projPool, projOpts); err != nil {
		return err
	}
	feedMetrics := feed.NewMetrics(reg)
	s.feedListener = &feed.Listener{Connect: s.listenConn, Logger: s.logger, Metrics: feedMetrics}
	s.feedListener.Handle(feed.ChangesChannel, feed.ChangesTopic(s.feed, s.origin, feedMetrics))
	s.feedListener.Handle(feed.AppendsChannel, feed.AppendsTopic(s.projector.Wake))
	s.lag = projections.NewLagMonitor(s.reads, 250*time.Millisecond)
	if err := s.lag.Measure(ctx); err != nil {
		return err
	}
	if err := s.buildWebhooks(ctx); err != nil {
		return err
	}
	runner := s.newRunner(s.pool, policy, s.cfg.AppendBatchMax)
	s.api = api.New(api.Config{Webhooks: s.webhookEndpoints, OnWebhookRetry: s.webhookSender.Wake, Runner: runner, Pool: s.reads, CommandPool: s.pool, Auth: auth, Policy: policy, Logger: s.logger, Registry: reg,
		RequestTimeout: s.cfg.RequestTimeout, Now: s.clock.Now, Lag: s.lag, MaxReadLag: s.cfg.readLagBound(),
		ReadyMaxLag: s.cfg.readLagBound(), MaxStreams: s.cfg.MaxStreams, MaxStreamsPerToken: s.cfg.MaxStreamsPerToken,
		Feed: s.feed, ConsistencyWait: s.cfg.ConsistencyWait, SeparateMetrics: s.cfg.MetricsAddr != "",
		Pools: map[string]*pgxpool.Pool{"commands": s.pool, "reads": s.reads, "projector": s.projPool, "reaper": s.reapPool, "webhooks": s.webhookPool}})
	// The reaper appends through a Runner of its own pool: a flood of
	// commands waiting on a lock cannot hold back the end of silent runs.
	reapRunner := s.newRunner(s.reapPool, policy, 1)
	for _, rn := range []*runs.Runner{runner, reapRunner} {
		rn.OnAppended = s.api.Metrics().ObserveResult
		rn.OnConflict = s.api.Metrics().Conflict
	}
	s.reaper, err = reaper.New(reaper.Config{Runner: reapRunner, Pool: s.reapPool, Interval: s.cfg.ReapInterval, Logger: s.logger,
		Metrics: reaper.NewMetrics(reg), Instance: s.origin})
	if err != nil {
		return err
	}
	s.listener, err = net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.MetricsAddr != "" {
		if s.metricsListener, err = net.Listen("tcp", s.cfg.MetricsAddr); err != nil {
			_ = s.listener.Close()
			return fmt.Errorf("listen on %s (--metrics-addr): %w", s.cfg.MetricsAddr, err)
		}
	}
	// The write timeout outlasts every handler's deadline, so an answer
	// computed (and a command committed) in time is never cut off unsent.
	s.http = &http.Server{Handler: s.api.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: s.cfg.RequestTimeout + 10*time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}
	return nil
}

// newRunner returns a command runner on pool whose committed appends wake
// this replica's projector at once, and its webhooks group when they hold
// more than heartbeats (it reads none: woken by each, it would read for
// nothing after every heartbeat, taking an xid to lock its offset row).
func (s *service) newRunner(pool *pgxpool.Pool, policy domain.Policy, batchMax int) *runs.Runner {
	opts := eventstore.Options{DefaultTTL: policy.StaleAfter, BatchMax: batchMax,
		OnCommitted:                 func(last int64) { s.projector.Wake(last) },
		OnCommittedBeyondHeartbeats: func(int64) { s.webhookProjector.Wake() },
		BatchSizes:                  func(n int) { s.batchSizes.Observe(float64(n)) }}
	if s.cfg.NotifyAppends {
		opts.NotifyChannel = feed.AppendsChannel
	}
	store := eventstore.NewWithOptions(pool, opts)
	rn := runs.NewRunner(store, policy)
	rn.Now = s.clock.Now
	return rn
}

// listenConn opens the change feed's LISTEN connection: a connection of its
// own, like the reads pool's, named for pg_stat_activity.
func (s *service) listenConn(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.reads.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = fmt.Sprintf("runledger-listener:%d", os.Getpid())
	return pgx.ConnectConfig(ctx, cfg)
}

// URL is the base URL the service answers on.
func (s *service) URL() string { return "http://" + s.listener.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully within
// --shutdown-timeout: stop accepting, end SSE streams, finish in-flight
// requests, stop the background services, close the pools. It returns an
// error naming a service that stopped on its own (the process then stops
// too, and exits non-zero), or those that did not stop by the deadline.
func (s *service) Run(ctx context.Context) error {
	// Background services run until the front ones (which take requests)
	// have stopped: a request in flight may wait for the projector.
	back := lifecycle.Start(context.WithoutCancel(ctx), s.logger, s.backgroundServices()...)
	front := lifecycle.Start(context.WithoutCancel(ctx), s.logger, s.frontServices()...)
	s.logger.Info("serving", "addr", s.listener.Addr().String(), "stale_after", s.cfg.StaleAfter.String(),
		"reap_interval", s.cfg.ReapInterval.String(), "heartbeat_min_interval", s.cfg.HeartbeatMinInterval.String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-front.Failed():
	case runErr = <-back.Failed():
	}
	if runErr != nil {
		s.logger.Error("a service stopped; shutting down", "err", runErr)
	}
	s.logger.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	deadline, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := errors.Join(front.Stop(deadline), back.Stop(deadline)); err != nil {
		// A hung service may hold a connection, and closing the pools
		// would wait for it: they are left to the process's exit.
		return errors.Join(runErr, fmt.Errorf("shutdown after %s: %w", s.cfg.ShutdownTimeout, err))
	}
	closed := make(chan struct{})
	go func() { s.closePools(); close(closed) }()
	select {
	case <-closed:
	case <-deadline.Done():
		return errors.Join(runErr, fmt.Errorf("shutdown after %s: the database pools did not close in time", s.cfg.ShutdownTimeout))
	}
	s.logger.Info("stopped")
	return runErr
}

// frontServices are the HTTP servers: each serves until its context ends,
// then shuts down gracefully (SSE streams ended, in-flight requests
// finished, each within its own deadline).
func (s *service) frontServices() []lifecycle.Named {
	list := []lifecycle.Named{{Name: "http", Service: lifecycle.HTTPServer{Server: s.http, Listener: s.listener, BeforeShutdown: s.api.CloseStreams}}}
	if s.cfg.DebugAddr != "" {
		list = append(list, lifecycle.Named{Name: "debug server", Service: lifecycle.HTTPServer{Server: s.debugServer()}})
	}
	if metrics := s.metricsServer(); metrics != nil {
		list = append(list, lifecycle.Named{Name: "metrics server", Service: lifecycle.HTTPServer{Server: metrics, Listener: s.metricsListener}})
	}
	return list
}

// backgroundServices are the parts that keep the read models, the runs and
// the clock honest.
func (s *service) backgroundServices() []lifecycle.Named {
	list := []lifecycle.Named{
		{Name: "database clock", Service: s.clock},
		{Name: "change feed", Service: s.feedListener},
		{Name: "lag monitor", Service: s.lag},
		{Name: "projector", Service: s.projector},
		{Name: "reaper", Service: s.reaper},
		{Name: "idempotency sweeper", Service: &runs.IdempotencySweeper{Keys: runs.NewIdempotencyKeys(s.pool), Logger: s.logger}},
		{Name: "webhook projector", Service: s.webhookProjector},
		{Name: "webhook sender", Service: s.webhookSender},
	}
	if s.cfg.CompactEndedBefore > 0 {
		list = append(list, lifecycle.Named{Name: "compaction", Service: s.scheduledCompaction()})
	}
	return list
}

// debugServer is the profiler's server, on its own address (never the API's).
func (s *service) debugServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.logger.Info("debug server", "addr", s.cfg.DebugAddr)
	return &http.Server{Addr: s.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

// defaultGCPercent is serve's GOGC unless the environment sets one: under
// heartbeat load the collector ran often on a small live heap; 200 measured
// +11% stored heartbeats/s in B1 and kept B7's peak resident set within its target.
const defaultGCPercent = 200

func runServe(ctx context.Context, args []string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.bindServe(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	svc, err := newService(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// projectorOptions derive the projector's transaction limits from the read
// lag bound: a batch whose process stalls (a frozen VM, a half-open
// connection) is ended by PostgreSQL, and its consumer group taken over by
// another replica, before the read models fall further behind than reads
// accept.
func projectorOptions(bound time.Duration, logger *slog.Logger, metrics *projections.Metrics) projections.Options {
	return projections.Options{Logger: logger, Metrics: metrics,
		LockTimeout:              max(bound/10, 100*time.Millisecond),
		StatementTimeout:         max(bound/2, time.Second),
		IdleInTransactionTimeout: max(bound/3, time.Second),
	}
}
