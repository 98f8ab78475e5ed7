package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
)

// A commit cut short by the projector stopping reads as a finished
// transaction (watermill then logs no error); any other failure stays as it
// is, so it is logged and retried.
func TestCommitCutShortByStopIsNotAnError(t *testing.T) {
	proj, err := byName(Runs)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	g := newGroup(proj, nil, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	g.stop = stop
	b := &batch{g: g}

	cancelled := fmt.Errorf("timeout: context already done: %w", context.Canceled)
	if err := b.endErr(cancelled); !errors.Is(err, stdsql.ErrTxDone) {
		t.Fatalf("a commit whose context was cancelled: %v, want sql.ErrTxDone", err)
	}
	broken := errors.New("connection reset by peer")
	if err := b.endErr(broken); err != broken {
		t.Fatalf("a commit that failed while running: %v, want it unchanged", err)
	}
	close(stop)
	if err := b.endErr(broken); !errors.Is(err, stdsql.ErrTxDone) {
		t.Fatalf("a commit that failed while stopping: %v, want sql.ErrTxDone", err)
	}
}
