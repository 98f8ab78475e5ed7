package api

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/runs"
)

// Metrics are the API's Prometheus collectors.
type Metrics struct {
	requests    *prometheus.HistogramVec
	runsStarted prometheus.Counter
	runsEnded   *prometheus.CounterVec
	conflicts   prometheus.Counter
	consistency consistencyMetrics
}

func newMetrics(reg prometheus.Registerer, s *Server) *Metrics {
	m := &Metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "runledger_http_request_duration_seconds",
			Help: "HTTP request latency by route and status.", Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"route", "status"}),
		runsStarted: prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_runs_started_total",
			Help: "Runs started by this process."}),
		runsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "runledger_runs_ended_total",
			Help: "Runs ended by this process, by end reason."}, []string{"reason"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_version_conflicts_total",
			Help: "Optimistic-concurrency conflicts retried by this process."}),
	}
	reg.MustRegister(m.requests, m.runsStarted, m.runsEnded, m.conflicts, &dbCollector{s: s},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "runledger_sse_streams_open",
			Help: "Watchers connected: SSE streams open on this replica."}, func() float64 { return float64(s.streams.open()) }))
	m.consistency = newConsistencyMetrics(reg)
	return m
}

func (m *Metrics) observeRequest(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

// ObserveResult counts the starts and ends in a command's events; wire it to
// Runner.OnAppended so the reaper's ends count too.
func (m *Metrics) ObserveResult(res runs.Result) {
	for _, e := range res.Events {
		switch e.(type) {
		case domain.RunStarted:
			m.runsStarted.Inc()
		case domain.RunCompleted, domain.RunStaleFailed:
			m.runsEnded.WithLabelValues(string(res.Run.EndReason)).Inc()
		}
	}
}

// Conflict counts one retried version conflict; wire it to Runner.OnConflict.
func (m *Metrics) Conflict() { m.conflicts.Inc() }

// MetricsHandler serves the Prometheus metrics. Whatever the scrape rate, the
// registry is gathered and each answer rendered at most once per
// observeEvery: the scrapes in between are sent those bytes. A scrape costs
// no query, no collector's work and no encoding of its own. A gauge that
// cannot be read is logged and left out; the rest is served.
func (s *Server) MetricsHandler() http.Handler {
	s.metricsOnce.Do(func() {
		gatherer := &cachedGatherer{g: s.cfg.Registry, every: observeEvery}
		s.metricsHandler = &cachedMetrics{every: observeEvery, entries: map[string]*renderedMetrics{},
			h: promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
				ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)})}
	})
	return s.metricsHandler
}

// cachedMetrics serves one rendering of h per answer format (text,
// OpenMetrics, protobuf; compressed or not) to every scrape within every.
type cachedMetrics struct {
	h     http.Handler
	every time.Duration

	mu      sync.Mutex // held while rendering: concurrent scrapes wait for it
	entries map[string]*renderedMetrics
}

type renderedMetrics struct {
	at  time.Time
	rec *answerRecorder
}

func (c *cachedMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The format promhttp would choose, and whether it would compress: a
	// handful of keys, whatever the headers say.
	key := string(expfmt.Negotiate(r.Header)) + "|" + strconv.FormatBool(strings.Contains(r.Header.Get("Accept-Encoding"), "gzip"))
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || time.Since(e.at) >= c.every {
		rec := &answerRecorder{header: http.Header{}, status: http.StatusOK}
		c.h.ServeHTTP(rec, r)
		rec.header.Set("Content-Length", strconv.Itoa(rec.body.Len()))
		e = &renderedMetrics{at: time.Now(), rec: rec}
		c.entries[key] = e
	}
	c.mu.Unlock()
	e.rec.writeTo(w)
}

// cachedGatherer serves one gathering of g to every rendering within every.
type cachedGatherer struct {
	g     prometheus.Gatherer
	every time.Duration

	mu  sync.Mutex // held while gathering
	at  time.Time
	mfs []*dto.MetricFamily
	err error
}

// Gather implements prometheus.Gatherer. The families it returns are shared
// by the renderings that get them, which only encode them.
func (c *cachedGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= c.every {
		c.mfs, c.err = c.g.Gather()
		c.at = time.Now()
	}
	return c.mfs, c.err
}

// Metrics returns the server's collectors, for wiring hooks.
func (s *Server) Metrics() *Metrics { return s.metrics }

// dbCollector reports gauges of the database from the server's observation
// (refreshed at most once a second, see observed.go) and the pools'
// statistics (in memory): a scrape costs the database nothing of its own.
type dbCollector struct{ s *Server }

var (
	activeRunsDesc = prometheus.NewDesc("runledger_active_runs", "Runs active now (not ended, heard from within the TTL).", nil, nil)
	stalledDesc    = prometheus.NewDesc("runledger_stalled_runs",
		"Active runs, not paused, whose heartbeats have carried no progress for their stall_after.", nil, nil)
	lagEventsDesc  = prometheus.NewDesc("runledger_projection_lag_events", "Committed events a projection has not applied.", []string{"projection"}, nil)
	lagSecondsDesc = prometheus.NewDesc("runledger_projection_lag_seconds", "Age of the oldest event a projection has not applied.", []string{"projection"}, nil)
	oldestOpenDesc = prometheus.NewDesc("runledger_oldest_open_run_silence_seconds",
		"Silence of the open run heard from longest ago (runs have their own TTLs: see runledger_open_run_overdue_seconds).", nil, nil)
	overdueDesc = prometheus.NewDesc("runledger_open_run_overdue_seconds",
		"How long the open run furthest past its own stale_at has been (0 when none is); above the reap interval, the reaper is behind.", nil, nil)
	poolConnsDesc = prometheus.NewDesc("runledger_db_pool_connections", "Database pool connections by pool (role) and state.", []string{"pool", "state"}, nil)
	poolWaitsDesc = prometheus.NewDesc("runledger_db_pool_acquire_waits_total",
		"Connection acquisitions that had to wait for a free connection, by pool.", []string{"pool"}, nil)
	poolWaitDesc = prometheus.NewDesc("runledger_db_pool_acquire_wait_seconds_total",
		"Time spent waiting for a free connection, by pool.", []string{"pool"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{activeRunsDesc, stalledDesc, lagEventsDesc, lagSecondsDesc, oldestOpenDesc,
		overdueDesc, poolConnsDesc, poolWaitsDesc, poolWaitDesc} {
		ch <- d
	}
}

// Collect reports the gauges. A gauge the observation could not read is
// reported as an invalid metric (the scrape logs it and serves the rest), so
// a failure is never a silently missing number.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	for _, role := range slices.Sorted(maps.Keys(c.s.pools)) {
		st := c.s.pools[role].Stat()
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.AcquiredConns()), role, "acquired")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.IdleConns()), role, "idle")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.MaxConns()), role, "max")
		ch <- prometheus.MustNewConstMetric(poolWaitsDesc, prometheus.CounterValue, float64(st.EmptyAcquireCount()), role)
		ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.CounterValue, st.EmptyAcquireWaitTime().Seconds(), role)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ob, err := c.s.observed.get(ctx)
	if err == nil && ob.openErr != nil {
		err = ob.openErr
	}
	if err != nil {
		for _, d := range []*prometheus.Desc{activeRunsDesc, stalledDesc, oldestOpenDesc, overdueDesc} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
	} else {
		ch <- prometheus.MustNewConstMetric(activeRunsDesc, prometheus.GaugeValue, float64(ob.active))
		ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, float64(ob.stalled))
		ch <- prometheus.MustNewConstMetric(oldestOpenDesc, prometheus.GaugeValue, ob.oldestSilence.Seconds())
		ch <- prometheus.MustNewConstMetric(overdueDesc, prometheus.GaugeValue, ob.overdue.Seconds())
	}
	if err == nil && ob.lagErr != nil {
		err = ob.lagErr
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(lagEventsDesc, err)
		return
	}
	for _, l := range ob.lags {
		ch <- prometheus.MustNewConstMetric(lagEventsDesc, prometheus.GaugeValue, float64(l.Events), l.Projection)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, l.Seconds, l.Projection)
	}
}
