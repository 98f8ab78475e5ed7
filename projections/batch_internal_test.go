package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"io"
	"log/slog"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"github.com/runledger/runledger/internal/pgtest"
)

// A batch whose commit is cut short by the projector stopping (the
// subscriber's context cancelled) reads as a finished transaction, so
// watermill logs no error, and its events are not made suspects: nothing
// was wrong with them.
func TestCommitCutShortByStopIsNeitherAnErrorNorSuspect(t *testing.T) {
	pool := pgtest.NewDB(t)
	proj, err := byName(Runs)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	opts.setDefaults()
	g := newGroup(proj, wsql.BeginnerFromPgx(pool), opts)
	g.stop = make(chan struct{})

	ctx, cancel := context.WithCancel(context.Background())
	tx, err := g.BeginTx(ctx, &stdsql.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := tx.(*batch)
	b.delivered = []int64{1, 2, 3}
	cancel() // the stop cancels the subscriber's context mid-batch
	err = b.Commit()
	if !errors.Is(err, stdsql.ErrTxDone) {
		t.Fatalf("commit after the stop: %v, want sql.ErrTxDone", err)
	}
	if len(g.suspects) != 0 {
		t.Fatalf("suspects after a stop: %v, want none", g.suspects)
	}
}

// Any other failure is not taken for a stop: it is returned as it is (logged
// and retried, its events made suspects).
func TestFailedCommitWhileRunningIsReported(t *testing.T) {
	proj, err := byName(Runs)
	if err != nil {
		t.Fatal(err)
	}
	g := newGroup(proj, nil, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	stop := make(chan struct{})
	g.stop = stop
	b := &batch{g: g}
	broken := errors.New("connection reset by peer")
	if b.stopping(broken) {
		t.Fatal("a failure while running was taken for a stop")
	}
	close(stop)
	if !b.stopping(broken) {
		t.Fatal("a failure after the stop was not taken for one")
	}
}
