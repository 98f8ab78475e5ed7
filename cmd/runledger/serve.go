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
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/migrations"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/reaper"
)

// service is the wired graph of `serve`: pools, command runner, projector,
// reaper and HTTP server. Tests and `dev` reuse it.
type service struct {
	cfg    Config
	logger *slog.Logger
	// pool serves the write side (appends, projector, reaper); reads holds
	// the API's queries apart, so a read never queues behind writers that
	// hold connections while they wait for their commit's WAL flush.
	pool      *pgxpool.Pool
	reads     *pgxpool.Pool
	api       *api.Server
	projector *projections.Projector
	reaper    *reaper.Reaper
	http      *http.Server
	listener  net.Listener
}

// newService connects, migrates (unless cfg.NoMigrate), builds every part and
// binds the listen address; it returns an error naming what is misconfigured.
func newService(ctx context.Context, cfg Config, logger *slog.Logger) (*service, error) {
	policy, err := cfg.Policy()
	if err != nil {
		return nil, err
	}
	auth, err := api.NewAuthenticator(cfg.AuthSecret, nil)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	pool, err := openPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	reads, err := openPoolWith(ctx, cfg.DatabaseURL, readPoolConns, readPoolConns)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &service{cfg: cfg, logger: logger, pool: pool, reads: reads}
	if err := s.build(ctx, policy, auth); err != nil {
		pool.Close()
		reads.Close()
		return nil, err
	}
	return s, nil
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	runner := eventstore.NewRunner(eventstore.New(s.pool), policy)
	s.api = api.New(api.Config{Runner: runner, Pool: s.reads, Auth: auth, Policy: policy, Logger: s.logger, Registry: reg})
	runner.OnAppended = s.api.Metrics().ObserveResult
	runner.OnConflict = s.api.Metrics().Conflict
	var err error
	s.projector, err = projections.NewProjector(s.pool, projections.Options{Logger: s.logger, Metrics: projections.NewMetrics(reg)})
	if err != nil {
		return err
	}
	s.reaper, err = reaper.New(reaper.Config{Runner: runner, Interval: s.cfg.ReapInterval, Logger: s.logger, Metrics: reaper.NewMetrics(reg)})
	if err != nil {
		return err
	}
	s.listener, err = net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.http = &http.Server{Handler: s.api.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}
	return nil
}

// URL is the base URL the service answers on.
func (s *service) URL() string { return "http://" + s.listener.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully: stop accepting,
// end SSE streams, finish in-flight requests, stop the reaper and the
// projector, close the pool.
func (s *service) Run(ctx context.Context) error {
	defer s.pool.Close()
	defer s.reads.Close()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(3)
	go func() { defer wg.Done(); errs <- wrap("projector", s.projector.Run(bg)) }()
	go func() { defer wg.Done(); errs <- wrap("reaper", s.reaper.Run(bg)) }()
	sweeper := api.IdempotencySweeper{Pool: s.pool, Logger: s.logger}
	go func() { defer wg.Done(); errs <- wrap("idempotency sweeper", sweeper.Run(bg)) }()
	go func() {
		if err := s.http.Serve(s.listener); !errors.Is(err, http.ErrServerClosed) {
			errs <- wrap("http", err)
		}
	}()
	if s.cfg.DebugAddr != "" {
		go s.serveDebug()
	}
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
	stopBG()
	wg.Wait()
	s.logger.Info("stopped")
	return runErr
}

// serveDebug serves the profiler on its own address (never on the API's).
func (s *service) serveDebug() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: s.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.logger.Info("debug server", "addr", s.cfg.DebugAddr)
	if err := srv.ListenAndServe(); err != nil {
		s.logger.Error("debug server", "err", err)
	}
}

func wrap(part string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", part, err)
}

func runServe(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.bindServe(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	logger := newLogger(cfg.LogLevel)
	svc, err := newService(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
