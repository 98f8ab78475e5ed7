package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/clock"
)

// scheduledCompaction is serve's --compact-ended-before: a compaction at
// once and then every interval, until its context ends.
type scheduledCompaction struct {
	store *eventstore.Store
	// now is the service's clock (the database's): the cutoff is judged on
	// the clock that stamped the runs' ends, not on this replica's.
	now func() time.Time
	// newTimer makes the wait between compactions (clock.NewTimer, or a
	// fake clock's in tests).
	newTimer              func(time.Duration) clock.Timer
	interval, endedBefore time.Duration
	policy                domain.Policy
	logger                *slog.Logger
}

// compactEvery runs serve's scheduled compaction on the maintenance pool.
func (s *service) compactEvery(ctx context.Context) {
	scheduledCompaction{
		store: eventstore.New(s.maintPool), now: s.clock.Now, newTimer: clock.NewTimer,
		interval: s.cfg.CompactInterval, endedBefore: s.cfg.CompactEndedBefore,
		policy: domain.Policy{StaleAfter: s.cfg.StaleAfter, HeartbeatMinInterval: s.cfg.HeartbeatMinInterval, StallAfter: s.cfg.StallAfter},
		logger: s.logger,
	}.run(ctx)
}

// run compacts runs ended longer ago than endedBefore, at once and then
// every interval (default an hour), until ctx ends. A failed compaction is
// logged and tried again at the next tick.
func (c scheduledCompaction) run(ctx context.Context) {
	interval := c.interval
	if interval <= 0 {
		interval = time.Hour
	}
	timer := c.newTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		res, err := c.store.Compact(ctx, eventstore.CompactParams{
			EndedBefore: c.now().Add(-c.endedBefore), Actor: "serve", Policy: c.policy})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.logger.Error("compaction failed", "err", err)
		case res.Runs > 0:
			c.logger.Info("compacted", "compaction", res.ID, "runs", res.Runs, "heartbeats_removed", res.EventsRemoved,
				"bytes", res.BytesRemoved, "skipped", res.Skipped)
		}
		timer.Reset(interval)
	}
}
