// Package dbclock gives every replica the same clock: PostgreSQL's. A
// replica measures the offset between its own clock and the database's
// clock_timestamp() (several round trips, the fastest one kept, its midpoint
// taken as the instant the database read its clock), refreshes it
// periodically, and answers Now() as the database's time at the last
// measurement plus the time elapsed since on this process's monotonic clock,
// so a step of the host's wall clock (by hand, by NTP) moves nothing: the
// wall clock serves only to report the offset. Decisions (occurred_at, the active rule, the reaper's cutoff,
// heartbeat coalescing, token expiry) then agree across replicas whose own
// clocks disagree, within the round trip's half-width.
package dbclock

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a Clock.
type Options struct {
	// Local is this process's wall clock (default time.Now), used only
	// before the first measurement and to report the offset. Tests skew it.
	Local func() time.Time
	// Refresh is how often the offset is measured again (default 30s).
	Refresh time.Duration
	// Samples is the number of round trips per measurement (default 5).
	Samples int
	// WarnOffset is the offset past which a measurement is logged as a
	// warning: this host's clock needs attention (default 1s).
	WarnOffset time.Duration
	Logger     *slog.Logger
	// OnMeasure, if set, receives each measurement (for metrics).
	OnMeasure func(offset, uncertainty time.Duration)
}

// maxHold is the largest backward correction Now absorbs by standing still;
// a larger one (a first measurement, a host clock stepped by hand) is taken
// at once.
const maxHold = time.Second

// Clock is the database's clock as seen from this process. Now is safe for
// concurrent use and monotonic between measurements (the database's time at
// the measurement plus monotonic elapsed time); a new measurement that moves
// it back by up to a second is absorbed by standing still until it catches up.
type Clock struct {
	pool *pgxpool.Pool
	opts Options
	// base is the origin of mono: its monotonic reading, never its wall time.
	base time.Time

	mu     sync.Mutex
	synced bool
	// anchor is the database's time at monotonic instant anchorMono.
	anchor     time.Time
	anchorMono time.Duration
	offset     time.Duration
	last       time.Time
}

// New returns a Clock on pool; call Sync before relying on it.
func New(pool *pgxpool.Pool, opts Options) *Clock {
	if opts.Local == nil {
		opts.Local = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 30 * time.Second
	}
	if opts.Samples <= 0 {
		opts.Samples = 5
	}
	if opts.WarnOffset <= 0 {
		opts.WarnOffset = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Clock{pool: pool, opts: opts, base: time.Now()}
}

// mono is the monotonic time elapsed since New; no wall-clock step moves it.
func (c *Clock) mono() time.Duration { return time.Since(c.base) }

// Now returns the database's time: its time at the last measurement plus the
// monotonic time elapsed since (before any measurement, the local clock).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var now time.Time
	if c.synced {
		now = c.anchor.Add(c.mono() - c.anchorMono)
	} else {
		now = c.opts.Local()
	}
	if now.Before(c.last) && c.last.Sub(now) <= maxHold {
		return c.last
	}
	c.last = now
	return now
}

// Offset is the database's clock minus this process's, as last measured.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// Sync measures the offset now. It returns an error if no round trip succeeded.
func (c *Clock) Sync(ctx context.Context) error {
	best := time.Duration(-1)
	var (
		offset, anchorMono time.Duration
		anchor             time.Time
		lastErr            error
	)
	for i := 0; i < c.opts.Samples; i++ {
		wall, before := c.opts.Local(), c.mono()
		var db time.Time
		if err := c.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&db); err != nil {
			lastErr = err
			continue
		}
		rtt := c.mono() - before
		if best < 0 || rtt < best {
			best = rtt
			anchor, anchorMono = db, before+rtt/2
			offset = db.Sub(wall.Add(rtt / 2))
		}
	}
	if best < 0 {
		return fmt.Errorf("measure the database clock: %w", lastErr)
	}
	c.mu.Lock()
	c.synced, c.anchor, c.anchorMono, c.offset = true, anchor, anchorMono, offset
	c.mu.Unlock()
	if offset > c.opts.WarnOffset || offset < -c.opts.WarnOffset {
		c.opts.Logger.Warn("this host's clock differs from the database's; decisions use the database's",
			"offset", offset.Round(time.Millisecond), "uncertainty", (best / 2).Round(time.Microsecond))
	}
	if c.opts.OnMeasure != nil {
		c.opts.OnMeasure(offset, best/2)
	}
	return nil
}

// Run measures again every Refresh until ctx ends, then returns nil; a
// failed measurement keeps the last offset and is logged.
func (c *Clock) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.Sync(ctx); err != nil && ctx.Err() == nil {
				c.opts.Logger.Warn("database clock not measured; keeping the last offset", "err", err)
			}
		}
	}
}
