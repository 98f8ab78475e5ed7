package eventstore_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
)

// An append that writes tells the notify channel its highest position; one
// that writes nothing (a version conflict, a start refused by the open run)
// sends nothing, not an empty payload. PostgreSQL may run the prepared statement with a custom or a
// generic plan (it switches after five executions), and their join orders
// differ: both must notify only what was written.
func TestAppendNotifiesItsPositionAndAConflictNothing(t *testing.T) {
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			u, err := url.Parse(pgtest.URL(t))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("plan_cache_mode", mode)
			u.RawQuery = q.Encode()
			pool := pgtest.Pool(t, u.String())
			testAppendNotifications(ctx, t, pool)
		})
	}
}

func testAppendNotifications(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN t_appends`); err != nil {
		t.Fatal(err)
	}
	next := func(what string) string {
		t.Helper()
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for the notification of %s: %v", what, err)
		}
		return n.Payload
	}
	store := eventstore.NewWithOptions(pool, eventstore.Options{NotifyChannel: "t_appends"})

	id := uuid.New()
	res, err := store.Append(ctx, id, 0, started(id, "n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := next("the start"); got != strconv.FormatInt(res.LastPosition, 10) {
		t.Fatalf("the start notified %q, want %d", got, res.LastPosition)
	}
	cur := res.Run
	for i := range 9 { // past five executions PostgreSQL may switch to a generic plan
		hb, err := store.AppendTo(ctx, id, cur, heartbeat(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := next("a heartbeat"); got != strconv.FormatInt(hb.LastPosition, 10) {
			t.Fatalf("round %d: the channel said %q, want the heartbeat's position %d", i, got, hb.LastPosition)
		}
		// Two statements that write nothing: an append from the state
		// before that heartbeat (a version conflict found by the statement
		// itself), and a second open run of the business.
		if _, err := store.AppendTo(ctx, id, cur, heartbeat(100+i)); !errors.Is(err, eventstore.ErrVersionConflict) {
			t.Fatalf("round %d: append from an old version: %v, want a conflict", i, err)
		}
		second := uuid.New()
		if _, err := store.Append(ctx, second, 0, started(second, "n")); !errors.Is(err, domain.ErrActiveRunExists) {
			t.Fatalf("round %d: a second open run: %v, want %v", i, err, domain.ErrActiveRunExists)
		}
		cur = hb.Run
	}
	last, err := store.AppendTo(ctx, id, cur, heartbeat(50))
	if err != nil {
		t.Fatal(err)
	}
	if got := next("the last heartbeat"); got != strconv.FormatInt(last.LastPosition, 10) {
		t.Fatalf("after the refused appends the channel said %q, want the last heartbeat's position %d", got, last.LastPosition)
	}
}
