package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
	"github.com/runledger/runledger/runs"
)

// Config configures a Reaper.
type Config struct {
	Runner *runs.Runner
	// Pool is the reaper's pool, on which it holds the sweep's advisory lock
	// (required unless NoLock).
	Pool *pgxpool.Pool
	// Interval is the longest time between two sweeps.
	Interval time.Duration
	// Now is the server clock (tests inject a fake one); default Runner.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Instance names this replica in event metadata (default hostname:pid).
	Instance string
	// BatchSize caps the runs handled per query (default 500).
	BatchSize int
	// Workers is the number of runs ended in parallel (default 4).
	Workers int
	// NoLock skips the advisory lock (tests prove correctness without it).
	NoLock  bool
	Metrics *Metrics
}

// Metrics are the reaper's Prometheus collectors.
type Metrics struct {
	Reaped prometheus.Counter
	Errors prometheus.Counter
	Sweeps prometheus.Histogram
}

// NewMetrics creates the reaper's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reaped: prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_reaper_reaped_total", Help: "Runs this replica ended as stale."}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_reaper_errors_total", Help: "Errors while reaping."}),
		Sweeps: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "runledger_reaper_sweep_duration_seconds",
			Help: "Duration of reaper sweeps.", Buckets: prometheus.DefBuckets}),
	}
	reg.MustRegister(m.Reaped, m.Errors, m.Sweeps)
	return m
}

// Reaper ends silent runs.
type Reaper struct {
	cfg Config
}

// New returns a Reaper; it returns an error for a missing Runner, a missing
// Pool (unless NoLock) or a non-positive interval.
func New(cfg Config) (*Reaper, error) {
	if cfg.Runner == nil {
		return nil, errors.New("reaper: no runner")
	}
	if cfg.Pool == nil && !cfg.NoLock {
		return nil, errors.New("reaper: no pool for the sweep lock")
	}
	if cfg.Interval <= 0 {
		return nil, errors.New("reaper: interval must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Runner.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Instance == "" {
		host, _ := os.Hostname()
		cfg.Instance = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	return &Reaper{cfg: cfg}, nil
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Reaped  int // runs this sweep ended
	Alive   int // found silent, but a heartbeat won the race
	Gone    int // ended meanwhile by someone else (a user, a worker, another replica)
	Errors  int
	Skipped bool // another replica held the sweep lock
}

// Sweep ends every run silent past the TTL at the reaper's now.
func (r *Reaper) Sweep(ctx context.Context) (SweepResult, error) {
	start := time.Now()
	if !r.cfg.NoLock {
		lock, err := advisory.TryLock(ctx, r.cfg.Pool, advisory.Reaper)
		if err != nil {
			return SweepResult{}, err
		}
		if lock == nil {
			return SweepResult{Skipped: true}, nil
		}
		defer r.unlock(ctx, lock)
	}
	var total SweepResult
	for {
		runs, err := r.cfg.Runner.Store.SilentRuns(ctx, r.cfg.Now(), r.cfg.BatchSize)
		if err != nil {
			return total, err
		}
		res := r.endAll(ctx, runs)
		total.Reaped += res.Reaped
		total.Alive += res.Alive
		total.Gone += res.Gone
		total.Errors += res.Errors
		if len(runs) < r.cfg.BatchSize || res.Reaped+res.Gone == 0 {
			break
		}
	}
	if m := r.cfg.Metrics; m != nil {
		m.Sweeps.Observe(time.Since(start).Seconds())
	}
	return total, nil
}

// unlock releases the sweep lock; one that fails closes its connection
// (advisory.Lock.Unlock) rather than leave it in the pool, where it would
// keep every replica's sweeps skipping.
func (r *Reaper) unlock(ctx context.Context, lock *advisory.Lock) {
	if err := lock.Unlock(ctx); err != nil {
		r.cfg.Logger.Warn("reaper could not release its sweep lock; closing the connection", "err", err)
	}
}

func (r *Reaper) endAll(ctx context.Context, runs []domain.Run) SweepResult {
	var (
		mu  sync.Mutex
		res SweepResult
		wg  sync.WaitGroup
	)
	work := make(chan domain.Run)
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for run := range work {
				outcome := r.end(ctx, run)
				mu.Lock()
				switch outcome {
				case reaped:
					res.Reaped++
				case alive:
					res.Alive++
				case gone:
					res.Gone++
				default:
					res.Errors++
				}
				mu.Unlock()
			}
		}()
	}
	for _, run := range runs {
		work <- run
	}
	close(work)
	wg.Wait()
	return res
}

type outcome int

const (
	failed outcome = iota
	reaped
	alive
	gone
)

func (r *Reaper) end(ctx context.Context, run domain.Run) outcome {
	meta := eventstore.Metadata{Actor: "reaper:" + r.cfg.Instance, CorrelationID: "reap-" + run.ID.String()}
	res, err := r.cfg.Runner.Execute(ctx, run.BusinessID, run.ID, domain.FailStale{DetectedBy: "reaper:" + r.cfg.Instance}, meta)
	switch {
	case err == nil:
		r.cfg.Logger.Info("run ended as stale", "run_id", run.ID, "business_id", run.BusinessID,
			"silent_for", r.cfg.Now().Sub(run.LastHeartbeatAt).Round(time.Millisecond), "status", res.Run.Status,
			"abandoned_calls", res.Run.AbandonedCalls)
		if m := r.cfg.Metrics; m != nil {
			m.Reaped.Inc()
		}
		return reaped
	case errors.Is(err, domain.ErrNotStale):
		return alive
	case errors.Is(err, domain.ErrRunEnded), errors.Is(err, domain.ErrRunNotFound):
		return gone
	}
	r.cfg.Logger.Error("reaper could not end run", "run_id", run.ID, "err", err)
	if m := r.cfg.Metrics; m != nil {
		m.Errors.Inc()
	}
	return failed
}

// Run sweeps until ctx ends. After each sweep it sleeps until the next open
// run's deadline or Interval, whichever is sooner, so a run is ended close to
// the instant it goes stale rather than up to a whole interval later.
func (r *Reaper) Run(ctx context.Context) error {
	for {
		if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("reaper sweep failed", "err", err)
			if m := r.cfg.Metrics; m != nil {
				m.Errors.Inc()
			}
		}
		timer := time.NewTimer(r.nextWake(ctx))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// minWake keeps a burst of deadlines from turning into a busy loop.
const minWake = 20 * time.Millisecond

func (r *Reaper) nextWake(ctx context.Context) time.Duration {
	wait := r.cfg.Interval
	next, ok, err := r.cfg.Runner.Store.NextStaleAt(ctx)
	if err != nil || !ok {
		return wait
	}
	untilDeadline := next.Sub(r.cfg.Now())
	if untilDeadline <= 0 {
		// The sweep just ran, yet a run is overdue: it is failing or racing a
		// heartbeat. Retry soon, but do not spin.
		return min(wait, time.Second)
	}
	return min(wait, max(untilDeadline+time.Millisecond, minWake))
}
