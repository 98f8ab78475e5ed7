package longlog_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
	"github.com/runledger/runledger/webhooks"
)

// TestWebhooksReadSkipsHeartbeats: the webhooks group never sends anything
// per heartbeat (issue 26), and heartbeats are most of the log. Its read must
// find the next event that is not a heartbeat without reading the ones in
// between, and its lag must count only what it has to read: with its offset
// past the events it applied, then 1 000 (and, once it applied those, 20 000)
// heartbeats, then one event that is not a heartbeat, one read returns that
// event (and no heartbeat), touching about as many buffers either way, and
// the lag is that one event.
func TestWebhooksReadSkipsHeartbeats(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	catchUp := func() { // the group applies what is there, as in production
		t.Helper()
		wh, err := webhooks.NewProjector(pool, webhooks.ProjectorOptions{PollInterval: 10 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- wh.Run(runCtx) }()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			lag, err := webhooks.Lag(ctx, pool)
			if err != nil {
				t.Fatal(err)
			}
			if lag.Events == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the webhooks group did not catch up within 60s: %+v", lag)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	catchUp()

	costs := map[int]readCost{}
	version := int64(1)
	for _, heartbeats := range []int{1_000, 20_000} {
		// Past the group's offset: the heartbeats, then the run's end, each
		// in a transaction of its own.
		if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, occurred_at)
			SELECT gen_random_uuid(), $1, $2 + g, 'acme', $3, 1, '{}', now() FROM generate_series(1, $4::int) g`,
			run, version, domain.TypeHeartbeat, heartbeats); err != nil {
			t.Fatal(err)
		}
		version += int64(heartbeats) + 1
		if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_version, business_id, type, schema_version, data, occurred_at)
			VALUES (gen_random_uuid(), $1, $2, 'acme', $3, 1, '{}', now())`, run, version, domain.TypeRunCompleted); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE events`); err != nil {
			t.Fatal(err)
		}
		sql, args, err := webhooks.Read()
		if err != nil {
			t.Fatal(err)
		}
		if types := readTypes(t, pool, sql, args); len(types) != 1 || types[0] != domain.TypeRunCompleted {
			t.Errorf("after %d heartbeats the webhooks read returned %d events (%v …), want the run's end alone",
				heartbeats, len(types), first(types, 3))
		}
		lag, err := webhooks.Lag(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if lag.Events != 1 {
			t.Errorf("after %d heartbeats the webhooks group's lag is %d events, want 1 (the run's end)", heartbeats, lag.Events)
		}
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		costs[heartbeats] = explain(t, conn, recorded{sql: sql, args: args})
		conn.Release()
		catchUp()
	}
	s, l := costs[1_000], costs[20_000]
	t.Logf("webhooks read: %d buffers past 1 000 heartbeats, %d past 20 000", s.buffers, l.buffers)
	if l.buffers > 2*s.buffers+16 || l.seqScan {
		t.Errorf("the webhooks read touched %d buffers past 20 000 heartbeats, %d past 1 000: it reads the heartbeats\n%s", l.buffers, s.buffers, l.plan)
	}
	if !strings.Contains(l.plan, "events_except_heartbeats") {
		t.Errorf("the webhooks read does not enter the log through events_except_heartbeats (migration 0010):\n%s", l.plan)
	}
}

// readTypes runs the read in a transaction it rolls back and returns the
// types of the events it returned.
func readTypes(t *testing.T, pool *pgxpool.Pool, sql string, args []any) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var types []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, vals[6].(string))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return types
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }
