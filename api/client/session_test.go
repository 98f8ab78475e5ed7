package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
)

// holdGroup holds a consumer group back: it locks the group's offset row,
// which the group's subscriber locks (FOR UPDATE) to read its next batch,
// so nothing more is projected by it until the returned release is called.
func (e *env) holdGroup(group string) (release func()) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE) l`, group).Scan(&n); err != nil || n != 1 {
		e.t.Fatalf("lock the %s group's offset: %d rows, %v", group, n, err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
		}
	}
	e.t.Cleanup(release)
	return release
}

// A read right after the client's own command reflects it the first time,
// even with the runs read model held back: the client sends the position
// of its last answer and the server waits for its read model. With
// EventualReads the same read answers the stale "running" (the control
// that shows the projector really was behind).
func TestReadAfterOwnCompleteSeesIt(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name     string
		eventual bool
		want     string
	}{
		{"session consistency", false, client.StatusCompleted},
		{"eventual reads", true, client.StatusRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			business := "acme-" + map[bool]string{false: "session", true: "eventual"}[tc.eventual]
			worker := e.client(e.srv.URL, business, api.RoleWorker, func(o *client.Options) { o.EventualReads = tc.eventual })
			var release func()
			run, err := worker.Run(context.Background(), business, client.RunSpec{TotalCalls: 2}, func(ctx context.Context, p *client.Progress) error {
				p.Set(2, 0)
				// Let the runs model see the run running, then hold it back
				// before the complete is appended.
				waitFor(t, 10*time.Second, "the run projected", func() bool {
					r, err := worker.GetRun(ctx, business, p.RunID())
					return err == nil && r.Status == client.StatusRunning
				})
				release = e.holdGroup("runs")
				return nil
			})
			if err != nil || run.Status != client.StatusCompleted {
				t.Fatalf("Run = %+v, %v", run, err)
			}
			if worker.Position() < run.Position || worker.Position() == 0 {
				t.Fatalf("client position %d, complete's position %d", worker.Position(), run.Position)
			}
			// Release the group a little after the read is sent: a read that
			// waits for it sees the complete, one that does not answers at once.
			timer := time.AfterFunc(300*time.Millisecond, release)
			defer timer.Stop()
			got, err := worker.GetRun(context.Background(), business, run.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want {
				t.Fatalf("GetRun right after Run returned: status %q, want %q", got.Status, tc.want)
			}
		})
	}
}
