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
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/dbclock"
	"github.com/runledger/runledger/migrations"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/reaper"
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
	// clock is the database's clock, which every decision of every replica uses.
	clock *dbclock.Clock
	lag   *projections.LagMonitor
	feed  *projections.Feed
	// feedListener brings the other replicas' changes (LISTEN/NOTIFY).
	feedListener *projections.Listener
	origin       string
	batchSizes   prometheus.Histogram
	reg          *prometheus.Registry
	api          *api.Server
	projector    *projections.Projector
	reaper       *reaper.Reaper
	http         *http.Server
	listener     net.Listener
	// metricsListener serves /metrics when --metrics-addr is set.
	metricsListener net.Listener
}

// newService connects, migrates (unless cfg.NoMigrate), builds every part and
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
	for _, p := range []*pgxpool.Pool{s.pool, s.reads, s.projPool, s.reapPool} {
		if p != nil {
			p.Close()
		}
	}
}

func (s *service) build(ctx context.Context, policy domain.Policy, auth *api.Authenticator) error {
	if !s.cfg.NoMigrate {
		applied, err := migrations.Apply(ctx, s.pool)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			s.logger.Info("migrations applied", "migrations", applied)
		}
	}
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
	s.feed = projections.NewFeed()
	if err := s.feed.Sync(ctx, s.reads); err != nil {
		return err
	}
	var err error
	projOpts := projectorOptions(s.cfg.readLagBound(), s.logger, projections.NewMetrics(reg))
	projOpts.Feed, projOpts.NotifyChannel, projOpts.Origin = s.feed, projections.ChangesChannel, s.origin
	if s.projector, err = projections.NewProjector(s.projPool, projOpts); err != nil {
		return err
	}
	s.feedListener = &projections.Listener{Connect: s.listenConn, Feed: s.feed, Projector: s.projector,
		Origin: s.origin, Logger: s.logger, Metrics: projections.NewFeedMetrics(reg)}
	s.lag = projections.NewLagMonitor(s.reads, 250*time.Millisecond)
	if err := s.lag.Measure(ctx); err != nil {
		return err
	}
	runner := s.newRunner(s.pool, policy, s.cfg.AppendBatchMax)
	s.api = api.New(api.Config{Runner: runner, Pool: s.reads, Auth: auth, Policy: policy, Logger: s.logger, Registry: reg,
		RequestTimeout: s.cfg.RequestTimeout, Now: s.clock.Now, Lag: s.lag, MaxReadLag: s.cfg.readLagBound(),
		ReadyMaxLag: s.cfg.readLagBound(), MaxStreams: s.cfg.MaxStreams, MaxStreamsPerToken: s.cfg.MaxStreamsPerToken,
		Feed: s.feed, ConsistencyWait: s.cfg.ConsistencyWait, SeparateMetrics: s.cfg.MetricsAddr != "",
		Pools: map[string]*pgxpool.Pool{"commands": s.pool, "reads": s.reads, "projector": s.projPool, "reaper": s.reapPool}})
	// The reaper appends through a Runner of its own pool: a flood of
	// commands waiting on a lock cannot hold back the end of silent runs.
	reapRunner := s.newRunner(s.reapPool, policy, 1)
	for _, rn := range []*eventstore.Runner{runner, reapRunner} {
		rn.OnAppended = s.api.Metrics().ObserveResult
		rn.OnConflict = s.api.Metrics().Conflict
	}
	s.reaper, err = reaper.New(reaper.Config{Runner: reapRunner, Interval: s.cfg.ReapInterval, Logger: s.logger,
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
// this replica's projector at once.
func (s *service) newRunner(pool *pgxpool.Pool, policy domain.Policy, batchMax int) *eventstore.Runner {
	opts := eventstore.Options{DefaultTTL: policy.StaleAfter, BatchMax: batchMax,
		OnCommitted: func(last int64) { s.projector.Wake(last) },
		BatchSizes:  func(n int) { s.batchSizes.Observe(float64(n)) }}
	if s.cfg.NotifyAppends {
		opts.NotifyChannel = projections.AppendsChannel
	}
	store := eventstore.NewWithOptions(pool, opts)
	rn := eventstore.NewRunner(store, policy)
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

// Run serves until ctx ends, then shuts down gracefully: stop accepting,
// end SSE streams, finish in-flight requests, stop the reaper and the
// projector, close the pool.
func (s *service) Run(ctx context.Context) error {
	defer s.closePools()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make(chan error, 7)
	wg.Add(6)
	go func() { defer wg.Done(); s.clock.Run(bg) }()
	go func() { defer wg.Done(); errs <- wrap("change feed", s.feedListener.Run(bg)) }()
	go func() { defer wg.Done(); s.lag.Run(bg) }()
	go func() { defer wg.Done(); errs <- wrap("projector", s.projector.Run(bg)) }()
	go func() { defer wg.Done(); errs <- wrap("reaper", s.reaper.Run(bg)) }()
	sweeper := api.IdempotencySweeper{Pool: s.pool, Logger: s.logger}
	go func() { defer wg.Done(); errs <- wrap("idempotency sweeper", sweeper.Run(bg)) }()
	go func() {
		if err := s.http.Serve(s.listener); !errors.Is(err, http.ErrServerClosed) {
			errs <- wrap("http", err)
		}
	}()
	var debug *http.Server
	if s.cfg.DebugAddr != "" {
		debug = s.serveDebug()
	}
	metrics := s.serveMetrics()
	s.logger.Info("serving", "addr", s.listener.Addr().String(), "stale_after", s.cfg.StaleAfter.String(),
		"reap_interval", s.cfg.ReapInterval.String(), "heartbeat_min_interval", s.cfg.HeartbeatMinInterval.String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	s.logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.api.CloseStreams()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		s.logger.Error("http shutdown", "err", err)
	}
	if debug != nil {
		_ = debug.Shutdown(shutdownCtx)
	}
	if metrics != nil {
		_ = metrics.Shutdown(shutdownCtx)
	}
	stopBG()
	wg.Wait()
	s.logger.Info("stopped")
	return runErr
}

// serveDebug serves the profiler on its own address (never on the API's)
// until the returned server is shut down.
func (s *service) serveDebug() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: s.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.logger.Info("debug server", "addr", s.cfg.DebugAddr)
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("debug server", "err", err)
		}
	}()
	return srv
}

func wrap(part string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", part, err)
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
