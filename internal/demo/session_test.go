package demo

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/api/client"
	"github.com/runledger/runledger/projections"
)

// holdGroup holds a consumer group back: it locks the group's offset row,
// which the group's subscriber locks (FOR UPDATE) to read its next batch,
// so nothing more is projected by it until release is called.
func holdGroup(t *testing.T, db, group string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE) l`, group).Scan(&n); err != nil || n != 1 {
		t.Fatalf("lock the %s group's offset: %d rows, %v", group, n, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// The user's client reads what the demo's workers wrote, the first time:
// after a worker ends its run, the business's user client reads with the
// worker's position, so GetActive (how the demo's end finds the runs left
// open) does not answer a run just completed as still open while the read
// model is behind.
func TestUserReadsTheWorkersEndFirstTime(t *testing.T) {
	cfg, _, db := testDemoDB(t, time.Second)
	cfg.Businesses = 1
	ctx := context.Background()
	d, err := newDemo(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.transport.CloseIdleConnections()
	d.runsCtx, d.abortRuns = context.WithCancel(ctx)
	defer d.abortRuns()
	b := d.businesses[0]
	u := d.users[b]
	var release func()
	id := d.actRun(ctx, b, 0, FateNormal, "a run that completes", 2, func(ctx context.Context, p *client.Progress, _ *crashTransport) error {
		p.Set(2, 0)
		// Let the active-runs model show the run, then hold it back before
		// the worker's complete is appended.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			run, ok, err := u.GetActive(ctx, b)
			if err == nil && ok && run.RunID == p.RunID() {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the run never showed active: %+v %v %v", run, ok, err)
				return nil
			}
		}
		release = holdGroup(t, db, projections.ActiveRuns)
		return nil
	}, nil)
	if id == "" || release == nil {
		t.Fatalf("the run did not play (id %q)", id)
	}
	// Release the model a moment after the read is sent: a read that waits
	// for it sees the run ended; one that does not answers the older state.
	go func() { time.Sleep(time.Second); release() }()
	run, ok, err := u.GetActive(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Fatalf("right after its worker completed it, the user's client reads run %s as active (%s, %d/%d)", run.RunID, run.Status, run.CompletedCalls, run.TotalCalls)
	}
}
