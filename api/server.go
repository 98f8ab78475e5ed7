// Package api serves runledger's HTTP contract (v1): commands go through the
// event store's Runner, queries read the projections' read models, and every
// read of "active" applies the TTL rule at read time.
package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

//go:embed openapi.json
var openAPI []byte

// Config holds the server's dependencies.
type Config struct {
	Runner *eventstore.Runner
	Pool   *pgxpool.Pool
	Auth   *Authenticator
	Policy domain.Policy
	// Now is the server clock (tests inject a fake one).
	Now    func() time.Time
	Logger *slog.Logger
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	// ReadyMaxLag is the projection lag above which /readyz fails (default 5s).
	ReadyMaxLag time.Duration
	// StreamPoll is how often an SSE stream looks for changes (default 250ms).
	StreamPoll time.Duration
	// StreamKeepAlive is the interval of SSE comment lines (default 15s).
	StreamKeepAlive time.Duration
}

// Server is the HTTP API.
type Server struct {
	runner  *eventstore.Runner
	store   *eventstore.Store
	pool    *pgxpool.Pool
	auth    *Authenticator
	policy  domain.Policy
	now     func() time.Time
	logger  *slog.Logger
	metrics *Metrics
	cfg     Config
	mux     *http.ServeMux
	routes  []string
	// closing ends open SSE streams when the server shuts down.
	closing chan struct{}
	once    sync.Once
}

// New builds the server and registers its routes and metrics.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
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
	if cfg.StreamPoll <= 0 {
		cfg.StreamPoll = 250 * time.Millisecond
	}
	if cfg.StreamKeepAlive <= 0 {
		cfg.StreamKeepAlive = 15 * time.Second
	}
	s := &Server{runner: cfg.Runner, store: cfg.Runner.Store, pool: cfg.Pool, auth: cfg.Auth, policy: cfg.Policy,
		now: cfg.Now, logger: cfg.Logger, cfg: cfg, mux: http.NewServeMux(), closing: make(chan struct{})}
	s.metrics = newMetrics(cfg.Registry, s)
	s.routesV1()
	s.routesOpen()
	s.routesPage()
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	s.routes = append(s.routes, "GET /metrics")
	s.handle("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", jsonMediaType)
		_, _ = w.Write(openAPI)
	})
	return s
}

// CloseStreams ends every open SSE stream (at shutdown: http.Server.Shutdown
// waits for handlers, and a stream would otherwise never return).
func (s *Server) CloseStreams() { s.once.Do(func() { close(s.closing) }) }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
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
