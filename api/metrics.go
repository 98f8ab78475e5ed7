package api

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
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
func (m *Metrics) ObserveResult(res eventstore.Result) {
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

// Metrics returns the server's collectors, for wiring hooks.
func (s *Server) Metrics() *Metrics { return s.metrics }

// dbCollector reads gauges from the database at scrape time: active runs,
// projection lag, and the age of the oldest run that has not ended.
type dbCollector struct{ s *Server }

var (
	activeRunsDesc = prometheus.NewDesc("runledger_active_runs", "Runs active now (not ended, heard from within the TTL).", nil, nil)
	stalledDesc    = prometheus.NewDesc("runledger_stalled_runs",
		"Active runs, not paused, whose heartbeats have carried no progress for their stall_after.", nil, nil)
	lagEventsDesc  = prometheus.NewDesc("runledger_projection_lag_events", "Committed events a projection has not applied.", []string{"projection"}, nil)
	lagSecondsDesc = prometheus.NewDesc("runledger_projection_lag_seconds", "Age of the oldest event a projection has not applied.", []string{"projection"}, nil)
	oldestOpenDesc = prometheus.NewDesc("runledger_oldest_open_run_silence_seconds",
		"Silence of the open run heard from longest ago; above the TTL, the reaper is behind.", nil, nil)
	poolConnsDesc = prometheus.NewDesc("runledger_db_pool_connections", "Database pool connections by state.", []string{"state"}, nil)
	poolWaitsDesc = prometheus.NewDesc("runledger_db_pool_acquire_waits_total",
		"Connection acquisitions that had to wait for a free connection.", nil, nil)
	poolWaitDesc = prometheus.NewDesc("runledger_db_pool_acquire_wait_seconds_total",
		"Time spent waiting for a free connection.", nil, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeRunsDesc
	ch <- stalledDesc
	ch <- lagEventsDesc
	ch <- lagSecondsDesc
	ch <- oldestOpenDesc
	ch <- poolConnsDesc
	ch <- poolWaitsDesc
	ch <- poolWaitDesc
}

// Collect reads the gauges at scrape time. A gauge whose query fails is
// reported as an invalid metric (the scrape logs it and serves the rest), so
// a failure is never a silently missing number.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := c.s.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(st.MaxConns()), "max")
	ch <- prometheus.MustNewConstMetric(poolWaitsDesc, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.CounterValue, st.EmptyAcquireWaitTime().Seconds())
	now := c.s.now()
	if open, err := projections.AllOpenRuns(ctx, c.s.pool); err != nil {
		ch <- prometheus.NewInvalidMetric(activeRunsDesc, err)
		ch <- prometheus.NewInvalidMetric(stalledDesc, err)
	} else {
		active, stalled := 0, 0
		for _, r := range open { // the domain's rules, not copies of them in SQL
			if r.Active(now, c.s.policy.StaleAfter) {
				active++
			}
			if c.s.policy.Stalled(r.Run, now) {
				stalled++
			}
		}
		ch <- prometheus.MustNewConstMetric(activeRunsDesc, prometheus.GaugeValue, float64(active))
		ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, float64(stalled))
	}
	if lags, err := projections.Lags(ctx, c.s.pool, nil); err != nil {
		ch <- prometheus.NewInvalidMetric(lagEventsDesc, err)
	} else {
		for _, l := range lags {
			ch <- prometheus.MustNewConstMetric(lagEventsDesc, prometheus.GaugeValue, float64(l.Events), l.Projection)
			ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, l.Seconds, l.Projection)
		}
	}
	if oldest, ok, err := c.s.log.OldestOpenHeartbeat(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(oldestOpenDesc, err)
	} else {
		silence := 0.0
		if ok {
			silence = now.Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(oldestOpenDesc, prometheus.GaugeValue, silence)
	}
}
