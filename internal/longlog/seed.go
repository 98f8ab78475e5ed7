// Package longlog writes a long event log the way the service writes it, for
// the plan tests and the long-log benchmark (B11): many small transactions
// (so transaction ids interleave with positions as production's do), runs of
// about a hundred events each (a RunStarted, heartbeats every five seconds,
// an ending) spread over many businesses, with the payloads, metadata and
// run snapshots that appends write. The whole seed runs inside the server
// (one DO block that commits every EventsPerTx events), so a million events
// take seconds, not the hour a million HTTP commands would.
package longlog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options shape a seed. Zero fields take the defaults in parentheses.
type Options struct {
	// Events is the number of events to append (1,000,000). It is rounded up
	// to whole runs.
	Events int
	// EventsPerRun is each run's length (100): a RunStarted, heartbeats and
	// an ending; at least 3.
	EventsPerRun int
	// Businesses is how many businesses the runs spread over (1,000); each
	// has one run open at a time, the runs of all businesses interleave.
	Businesses int
	// EventsPerTx is the number of events per committed transaction (1,000).
	EventsPerTx int
	// Label names this seed: run ids derive from it and business ids are
	// "<label>-<n>" ("seed"). A second seed into the same database needs a
	// label of its own, or its run ids collide with the first's.
	Label string
}

func (o Options) withDefaults() Options {
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.EventsPerRun <= 0 {
		o.EventsPerRun = 100
	}
	if o.Businesses <= 0 {
		o.Businesses = 1000
	}
	if o.EventsPerTx <= 0 {
		o.EventsPerTx = 1000
	}
	if o.Label == "" {
		o.Label = "seed"
	}
	return o
}

// Result says what a seed wrote.
type Result struct {
	Events, Runs int64
	Elapsed      time.Duration
}

// heartbeatEvery is the interval between a seeded run's events, the
// service's default minimum heartbeat interval.
const heartbeatEvery = 5 * time.Second

var labelPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// Seed appends opts.Events events to the log of the database behind pool, in
// transactions of opts.EventsPerTx events, and the snapshot of each run. Every
// seeded run has ended, so none is active and the seed leaves room for any
// workload. The events lie in the past (ending about an hour ago, or after
// the log's newest event if that is later). It leaves the projections'
// offsets alone: rebuild (projections.Rebuild) to bring the read models up.
// It returns an error, having committed some transactions, if the database
// refuses a statement; a label it cannot use in an id is refused first.
func Seed(ctx context.Context, pool *pgxpool.Pool, opts Options) (Result, error) {
	o := opts.withDefaults()
	if !labelPattern.MatchString(o.Label) {
		return Result{}, fmt.Errorf("seed: label %q: want lower-case letters, digits and _", o.Label)
	}
	if o.EventsPerRun < 3 {
		return Result{}, errors.New("seed: a run needs at least 3 events (start, heartbeat, end)")
	}
	runs := (o.Events + o.EventsPerRun - 1) / o.EventsPerRun
	waves := (runs + o.Businesses - 1) / o.Businesses
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("seed: %w", err)
	}
	defer conn.Release()
	start := time.Now()
	// The DO block takes no parameters: every value formatted into it is an
	// integer or a checked label.
	if _, err := conn.Exec(ctx, fmt.Sprintf(seedSQL, o.Label, runs, o.Businesses, o.EventsPerRun, o.EventsPerTx,
		waves, int(heartbeatEvery/time.Second))); err != nil {
		return Result{}, fmt.Errorf("seed: %w", err)
	}
	return Result{Events: int64(runs) * int64(o.EventsPerRun), Runs: int64(runs), Elapsed: time.Since(start)}, nil
}
