// Package api serves runledger's HTTP contract (v1): commands go through
// runs.Runner, queries read the projections' read models, and every
// read of "active" applies the TTL rule at read time.
package api

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/internal/clock"
	"github.com/runledger/runledger/internal/ratelog"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
	"github.com/runledger/runledger/webhooks"
)

//go:embed openapi.json
var openAPI []byte

// Config holds the server's dependencies.
type Config struct {
	Runner *runs.Runner
	// Pool is the reads pool: the read models, the log's reads, /metrics.
	Pool *pgxpool.Pool
	// CommandPool is the commands pool, the one the Runner's store appends
	// on: the Idempotency-Key claims and answers run there, beside the
	// appends they wait for (default Pool).
	CommandPool *pgxpool.Pool
	// Pools are the process's pools by role (commands, reads, projector,
	// reaper), reported in runledger_db_pool_*; default the reads pool and
	// CommandPool.
	Pools  map[string]*pgxpool.Pool
	Auth   *Authenticator
	Policy domain.Policy
	// Now is the server clock (tests inject a fake one), and NewTimer makes
	// timers on it (default the process's timers).
	Now      func() time.Time
	NewTimer func(time.Duration) clock.Timer
	Logger   *slog.Logger
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	// ReadyMaxLag is the projection lag above which /readyz fails (default 5s).
	ReadyMaxLag time.Duration
	// StreamKeepAlive is the interval of SSE comment lines (default 15s).
	StreamKeepAlive time.Duration
	// RequestTimeout is the deadline of every request but the streams
	// (default 5s); the HTTP server's write timeout must outlast it.
	RequestTimeout time.Duration
	// Lag, if set, tells how far the read models are behind the log; GET
	// active and the stream refuse to judge from a read model more than
	// MaxReadLag behind (503 read_model_behind).
	Lag *projections.LagMonitor
	// MaxReadLag is that bound (default 5s); keep it well under the TTL.
	MaxReadLag time.Duration
	// MaxStreams caps this replica's open SSE streams, MaxStreamsPerToken
	// the streams of one token (defaults 5000 and 10); beyond, 429.
	MaxStreams, MaxStreamsPerToken int
	// Feed tells which read models applied what (reads given ?after=) and
	// which businesses moved (the streams). Without it, ?after= is only
	// validated and streams cannot follow changes.
	Feed *feed.Feed[projections.RunRow]
	// ConsistencyWait bounds a read's wait for its position (default 2s).
	ConsistencyWait time.Duration
	// SeparateMetrics leaves /metrics out of Handler: the process serves
	// MetricsHandler on a listener of its own (serve --metrics-addr).
	SeparateMetrics bool
	// Webhooks is the webhook endpoints' registry (default: on Pool, with
	// the strict policy: https to public addresses only).
	Webhooks *webhooks.Endpoints
	// OnWebhookRetry, if set, is called after a delivery is made due again
	// (the sender's wake-up).
	OnWebhookRetry func()
}

// Server is the HTTP API.
type Server struct {
	runner *runs.Runner
	// keys are the Idempotency-Key answers, on the commands pool.
	keys *runs.IdempotencyKeys
	// log reads the log on the reads pool (the Runner appends on the
	// commands pool, whose connections the appends wait on).
	log     *eventstore.Store
	pool    *pgxpool.Pool
	auth    *Authenticator
	policy  domain.Policy
	now     func() time.Time
	logger  *slog.Logger
	metrics *Metrics
	cfg     Config
	// failures rate-limits the logging of failed requests: an outage fails
	// thousands the same way each second.
	failures *ratelog.Limiter
	streams  *streamLimiter
	// runReads merges the concurrent reads of one run by its watchers.
	runReads singleflight.Group
	webhooks *webhooks.Endpoints
	mux      *http.ServeMux
	routes   []string
	// closing ends open SSE streams when the server shuts down.
	closing chan struct{}
	// detached counts the streams running on connections taken over from
	// net/http (sse_conn.go), which http.Server.Shutdown does not wait for.
	detached sync.WaitGroup
	detachMu sync.Mutex // orders detached.Add before CloseStreams' Wait
	// detachedOpen is detached's count, for the log when a stream outlives
	// CloseStreams' wait.
	detachedOpen atomic.Int64
	once         sync.Once
	hooks        commandHooks
	offsets      *offsetRefresher
	// observed is what /metrics and /readyz report of the database.
	observed *observer
	// pools are the process's pools by role, for runledger_db_pool_*.
	pools map[string]*pgxpool.Pool
	// metricsHandler serves /metrics (see MetricsHandler).
	metricsHandler *cachedMetrics
	metricsOnce    sync.Once
}

// New builds the server and registers its routes and metrics.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewTimer == nil {
		cfg.NewTimer = clock.NewTimer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.ReadyMaxLag <= 0 {
		cfg.ReadyMaxLag = 5 * time.Second
	}
	if cfg.StreamKeepAlive <= 0 {
		cfg.StreamKeepAlive = 15 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.MaxReadLag <= 0 {
		cfg.MaxReadLag = 5 * time.Second
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 5000
	}
	if cfg.MaxStreamsPerToken <= 0 {
		cfg.MaxStreamsPerToken = 10
	}
	if cfg.ConsistencyWait <= 0 {
		cfg.ConsistencyWait = 2 * time.Second
	}
	if cfg.CommandPool == nil {
		cfg.CommandPool = cfg.Pool
	}
	if cfg.Webhooks == nil {
		cfg.Webhooks = &webhooks.Endpoints{Pool: cfg.Pool, Now: cfg.Now}
	}
	s := &Server{webhooks: cfg.Webhooks, runner: cfg.Runner, keys: runs.NewIdempotencyKeys(cfg.CommandPool), pool: cfg.Pool, auth: cfg.Auth, policy: cfg.Policy,
		now: cfg.Now, logger: cfg.Logger, cfg: cfg, mux: http.NewServeMux(), closing: make(chan struct{}),
		failures: ratelog.New(cfg.Logger, time.Second), streams: newStreamLimiter(cfg.MaxStreams, cfg.MaxStreamsPerToken)}
	s.log = eventstore.New(cfg.Pool)
	s.observed = &observer{s: s}
	s.pools = cfg.Pools
	if s.pools == nil {
		s.pools = map[string]*pgxpool.Pool{"reads": cfg.Pool, "commands": cfg.CommandPool}
	}
	s.offsets = &offsetRefresher{feed: cfg.Feed, pool: cfg.Pool}
	s.metrics = newMetrics(cfg.Registry, s)
	s.routesV1()
	s.routesOpen()
	s.routesOpenStream()
	s.routesWebhooks()
	s.routesPage()
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	if !cfg.SeparateMetrics {
		s.mux.Handle("GET /metrics", s.MetricsHandler())
		s.routes = append(s.routes, "GET /metrics")
	}
	s.handle("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", jsonMediaType)
		_, _ = w.Write(openAPI)
	})
	return s
}

// CloseStreams ends every open SSE stream and waits until they have ended,
// at most two write timeouts (a stream blocked writing to a client that
// stopped reading, then its last chunk). At shutdown: http.Server.Shutdown
// waits for handlers, and a stream would otherwise never return; nor does it
// wait for the streams that took their connections over.
func (s *Server) CloseStreams() {
	s.detachMu.Lock()
	s.once.Do(func() { close(s.closing) })
	s.detachMu.Unlock()
	ended := make(chan struct{})
	go func() { s.detached.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(2 * streamWriteTimeout):
		s.logger.Warn("streams still open at shutdown", "streams", s.detachedOpen.Load())
	}
}

// OpenStreams is the number of SSE streams open on this server.
func (s *Server) OpenStreams() int { return s.streams.open() }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// serveHTTP routes a request; a path nothing serves, or a method the path
// does not take, answers problem+json (404 not_found; 405 with Allow) like
// every other error.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	probe := &headerProbe{header: http.Header{}}
	s.mux.ServeHTTP(probe, r) // the mux's own 404 or 405, for its status and Allow
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		s.writeError(w, r, newProblem(CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s (allowed: %s)",
			r.Method, r.URL.Path, probe.header.Get("Allow"))))
		return
	}
	s.writeError(w, r, newProblem(CodeNotFound, "no such resource: "+r.URL.Path))
}

// headerProbe records what a handler answers without sending it.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(status int)      { p.status = status }

// Routes lists the registered "METHOD /pattern" routes.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// handle registers a route with request ids, panic recovery and metrics.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.Handle(pattern, s.instrument(pattern, h))
}

type ctxKey int

const requestIDKey ctxKey = iota

func (s *Server) instrument(pattern string, h http.HandlerFunc) http.Handler {
	streaming := strings.HasSuffix(pattern, "/stream")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !streaming {
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 128 {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic in handler", "route", pattern, "panic", p, "request_id", id)
				if !rec.wrote {
					s.writeError(rec, r, newProblem(CodeInternal, internalErrorResponse))
				}
			}
			s.metrics.observeRequest(pattern, rec.status, time.Since(start))
			s.logger.Debug("request", "route", pattern, "status", rec.status, "duration", time.Since(start), "request_id", id)
		}()
		h(rec, r)
	})
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// statusRecorder remembers the status for metrics; it passes Flush and the
// response controller through for SSE.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
