package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
	"github.com/runledger/runledger/internal/clock"
)

// scheduledCompaction is serve's --compact-ended-before: a compaction at
// once and then every interval, until its context ends.
type scheduledCompaction struct {
	store *eventstore.Store
	// pool holds the compaction lock for a pass (a connection of its own).
	pool *pgxpool.Pool
	// now is the service's clock (the database's): the cutoff is judged on
	// the clock that stamped the runs' ends, not on this replica's.
	now func() time.Time
	// newTimer makes the wait between compactions (clock.NewTimer, or a
	// fake clock's in tests).
	newTimer              func(time.Duration) clock.Timer
	interval, endedBefore time.Duration
	policy                domain.Policy
	logger                *slog.Logger
	// passed, if set, is called after each pass (tests).
	passed func()
}

// scheduledCompaction is serve's scheduled compaction on the maintenance pool.
func (s *service) scheduledCompaction() scheduledCompaction {
	return scheduledCompaction{
		store: eventstore.New(s.maintPool), pool: s.maintPool, now: s.clock.Now, newTimer: clock.NewTimer,
		interval: s.cfg.CompactInterval, endedBefore: s.cfg.CompactEndedBefore,
		policy: domain.Policy{StaleAfter: s.cfg.StaleAfter, HeartbeatMinInterval: s.cfg.HeartbeatMinInterval, StallAfter: s.cfg.StallAfter},
		logger: s.logger,
	}
}

// Run compacts runs ended longer ago than endedBefore, at once and then
// every interval (default an hour), until ctx ends; it returns nil then. A
// failed compaction is logged and tried again at the next tick.
func (c scheduledCompaction) Run(ctx context.Context) error {
	interval := c.interval
	if interval <= 0 {
		interval = time.Hour
	}
	timer := c.newTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		}
		c.pass(ctx)
		if c.passed != nil {
			c.passed()
		}
		timer.Reset(interval)
	}
}

// pass compacts once, unless another replica holds the compaction lock
// (advisory.Compaction: with several replicas, one compacts and the others
// skip their turn).
func (c scheduledCompaction) pass(ctx context.Context) {
	lock, err := advisory.TryLock(ctx, c.pool, advisory.Compaction)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Error("compaction failed", "err", err)
		}
		return
	}
	if lock == nil {
		c.logger.Debug("compaction skipped: another replica is compacting")
		return
	}
	defer func() { _ = lock.Unlock(ctx) }()
	res, err := c.store.Compact(ctx, eventstore.CompactParams{
		EndedBefore: c.now().Add(-c.endedBefore), Actor: "serve", Policy: c.policy})
	switch {
	case ctx.Err() != nil:
	case err != nil:
		c.logger.Error("compaction failed", "err", err)
	case res.Runs > 0:
		c.logger.Info("compacted", "compaction", res.ID, "runs", res.Runs, "heartbeats_removed", res.EventsRemoved,
			"bytes", res.BytesRemoved, "skipped", res.Skipped)
	}
}
