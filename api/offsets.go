package api

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/projections"
)

// offsetRefresher asks the database how far the read models are, for the
// reads that timed out waiting on the change feed (it may have missed a
// notification). However many reads time out at once, the replica sends one
// Sync at a time, and a read is served by any Sync that began after it began
// waiting: under a lagging read model the reads pool sees a bounded rate of
// Syncs, not one per read, and the streams re-read only the businesses that
// moved (see feed.Feed.Sync).
type offsetRefresher struct {
	feed *feed.Feed[projections.RunRow]
	pool *pgxpool.Pool

	mu sync.Mutex
	// done is the start of the last completed Sync, and err its error.
	done time.Time
	err  error
	// running, when not nil, is closed when the Sync begun at began ends.
	running chan struct{}
	began   time.Time
}

// refresh returns once a Sync that began at or after since has ended, with
// its error, or ctx's.
func (o *offsetRefresher) refresh(ctx context.Context, since time.Time) error {
	for {
		o.mu.Lock()
		if !o.done.Before(since) {
			err := o.err
			o.mu.Unlock()
			return err
		}
		if o.running == nil {
			o.running, o.began = make(chan struct{}), time.Now()
			o.mu.Unlock()
			o.sync()
			continue
		}
		running := o.running
		o.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sync runs one Sync for everyone waiting (on its own deadline: it serves
// other reads than the one that started it).
func (o *offsetRefresher) sync() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := o.feed.Sync(ctx, o.pool)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done, o.err = o.began, err
	close(o.running)
	o.running = nil
}
