package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/runs"
)

// runCompact removes from runs that ended before now − --ended-before the
// heartbeats no replay answer needs (DESIGN §8).
func runCompact(ctx context.Context, args []string) error {
	cmd := newDBCommand("compact")
	endedBefore := cmd.Duration("ended-before", 0, "compact runs that ended longer ago than this, e.g. 720h (required)")
	batch := cmd.Int("batch", 50, "runs compacted per transaction")
	actor := cmd.String("actor", defaultActor(), "who compacts, for the record")
	policy := cmd.lifecyclePolicy()
	pool, err := cmd.open(ctx, args)
	if err != nil {
		return err
	}
	defer pool.Close()
	if *endedBefore <= 0 {
		return fmt.Errorf("compact: --ended-before must be a positive duration (e.g. 720h)")
	}
	if *batch < 1 {
		return fmt.Errorf("compact: --batch must be at least 1")
	}
	start := time.Now()
	res, err := eventstore.New(pool).Compact(ctx, eventstore.CompactParams{EndedBefore: start.Add(-*endedBefore),
		Actor: *actor, BatchRuns: *batch, Policy: *policy, Hook: testPause})
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Printf("compaction %d: %d runs compacted, %d heartbeats removed of %d (%d bytes of rows), %d runs left for later (a consumer group has not applied them), %s (%.0f events/s)\n",
		res.ID, res.Runs, res.EventsRemoved, res.HeartbeatsBefore, res.BytesRemoved, res.Skipped,
		el.Round(time.Millisecond), float64(res.EventsRemoved)/el.Seconds())
	fmt.Println("the answer at every instant is preserved; VACUUM (autovacuum) makes the space reusable")
	return nil
}

// runErase removes a business from the log and the read models (DESIGN §8).
func runErase(ctx context.Context, args []string) error {
	cmd := newDBCommand("erase")
	business := cmd.String("business", "", "business id (required)")
	reason := cmd.String("reason", "", "why, for the erasure record (required)")
	force := cmd.Bool("force", false, "first end the business's open run as cancelled with the reason")
	actor := cmd.String("actor", defaultActor(), "who erases, for the record")
	policy := cmd.lifecyclePolicy()
	pool, err := cmd.open(ctx, args)
	if err != nil {
		return err
	}
	defer pool.Close()
	rn := runs.NewRunner(eventstore.New(pool), *policy)
	res, err := rn.Erase(ctx, eventstore.EraseParams{BusinessID: *business, Reason: *reason, Actor: *actor,
		Force: *force, Hook: testPause})
	if err != nil {
		return err
	}
	if res.Cancelled != "" {
		fmt.Printf("run %s ended as cancelled first\n", res.Cancelled)
	}
	fmt.Printf("erased business %s: %d rows removed %v\n", *business, res.Total(), res.Counts)
	return nil
}

// lifecyclePolicy binds the defaults for runs that recorded no policy of
// their own (runs started before runs recorded theirs).
func (c *dbCommand) lifecyclePolicy() *domain.Policy {
	p := domain.DefaultPolicy()
	p.StaleAfter = c.cfg.envDuration("RUNLEDGER_STALE_AFTER", p.StaleAfter)
	p.StallAfter = c.cfg.envDuration("RUNLEDGER_STALL_AFTER", p.StallAfter)
	c.Func("stale-after", "TTL of runs that recorded none (env RUNLEDGER_STALE_AFTER, default 15m)", durationFlag(&p.StaleAfter))
	c.Func("stall-after", "stall threshold of runs that recorded none (env RUNLEDGER_STALL_AFTER, default 10m)", durationFlag(&p.StallAfter))
	return &p
}

func defaultActor() string {
	if u := os.Getenv("USER"); u != "" {
		return "operator:" + u
	}
	return "operator:unknown"
}

// testPause stops the process at a named point when RUNLEDGER_TEST_PAUSE_AT
// names it: the crash tests kill it there. It prints the point on stderr
// first so the test knows it arrived.
func testPause(point string) {
	if os.Getenv("RUNLEDGER_TEST_PAUSE_AT") != point {
		return
	}
	fmt.Fprintf(os.Stderr, "paused at %s\n", point)
	time.Sleep(time.Hour)
}
