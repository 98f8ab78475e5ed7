package runs

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// sweepBatch bounds one DELETE, so a sweep never holds many row locks at once.
const sweepBatch = 5000

// Sweep deletes the answers that expired at or before now, in batches, and
// returns how many it deleted; on a database error it returns the count so
// far and the error. Keys being claimed right now are skipped (their claim
// replaces them), and so is a claim left without an answer (its server died)
// until 24 hours after it was made: its command may have appended, and a
// retry must find it under the same CommandID. Safe to run on every replica.
func (k *IdempotencyKeys) Sweep(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for {
		tag, err := k.pool.Exec(ctx, `
			DELETE FROM idempotency_keys WHERE ctid IN (
				SELECT ctid FROM idempotency_keys WHERE expires_at <= $1
					AND (status IS NOT NULL OR created_at <= $1::timestamptz - interval '24 hours')
				LIMIT $2 FOR UPDATE SKIP LOCKED)`, now.UTC(), sweepBatch)
		if err != nil {
			return total, fmt.Errorf("sweep idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < sweepBatch {
			return total, nil
		}
	}
}

// IdempotencySweeper is the background service that sweeps expired keys
// (serve runs one).
type IdempotencySweeper struct {
	Keys *IdempotencyKeys
	// Interval between sweeps (default 10m).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Run sweeps at once and then every Interval until ctx ends, and returns
// ctx's error. A failed sweep is logged and tried again at the next tick.
func (s IdempotencySweeper) Run(ctx context.Context) error {
	if s.Interval <= 0 {
		s.Interval = 10 * time.Minute
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		n, err := s.Keys.Sweep(ctx, s.Now())
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			s.Logger.Error("idempotency keys: sweep failed", "err", err)
		case n > 0:
			s.Logger.Info("idempotency keys: swept expired", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
