package projections

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/google/uuid"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
)

// A failing event is retried with growing pauses; the batch's lock is not
// held through them, so the subscriber can finish the batch meanwhile (at
// its ack deadline or a stop) instead of waiting for every retry, and the
// retries stop there. Ordered by the lock alone, no clock: the first retry
// fails, the "subscriber" takes the lock during the pause that follows and
// rolls the batch back, and no attempt runs after that.
func TestRetryPauseDoesNotHoldTheBatch(t *testing.T) {
	pool := pgtest.NewDB(t)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	g := newGroup(projection{name: Runs}, nil, Options{MaxRetries: 8, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b := &batch{g: g, tx: tx}

	retrying := make(chan struct{})
	attempts, afterDone := 0, 0
	attempt := func(context.Context, eventstore.Recorded) error {
		attempts++
		if b.done {
			afterDone++
		}
		if attempts == 1 {
			close(retrying)
		}
		return errors.New("refused")
	}
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		b.mu.Lock() // as apply holds it
		defer b.mu.Unlock()
		b.retryThenPoison(ctx, eventstore.Recorded{Position: 1, EventID: uuid.New()}, errors.New("refused"), attempt)
	}()
	<-retrying
	b.mu.Lock() // the subscriber finishing the batch
	retriesLeft := attempts < g.opts.MaxRetries-1
	b.done = true
	b.mu.Unlock()
	<-handled
	if !retriesLeft {
		t.Errorf("the subscriber got the batch's lock only after all %d retries", attempts)
	}
	if afterDone != 0 {
		t.Errorf("%d attempts ran after the batch was finished", afterDone)
	}
}
