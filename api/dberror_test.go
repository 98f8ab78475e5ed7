package api_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/runs"
)

// retryLookupKiller terminates, once armed, the session about to look up
// whether a refused append is a retry (pg_terminate_backend from another
// session): a database error at exactly that step.
type retryLookupKiller struct {
	admin *pgxpool.Pool
	armed atomic.Bool
	kills atomic.Int32
}

func (k *retryLookupKiller) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "FROM events WHERE event_id = ANY") && k.armed.CompareAndSwap(true, false) {
		var ok bool
		if err := k.admin.QueryRow(context.Background(), `SELECT pg_terminate_backend($1, 5000)`, conn.PgConn().PID()).Scan(&ok); err == nil && ok {
			k.kills.Add(1)
		}
	}
	return ctx
}

func (k *retryLookupKiller) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A heartbeat whose append is refused (another replica moved the run) and
// whose retry lookup then meets a database error answers 503 unavailable,
// which clients retry, and counts no version conflict: it is not a 409, nor
// a conflict silently retried.
func TestDatabaseErrorDuringAppendAnswers503(t *testing.T) {
	k := &retryLookupKiller{}
	var conflicts atomic.Int32
	e := newEnvWith(t, func(c *api.Config) {
		k.admin = c.Pool
		cfg := c.Pool.Config().Copy()
		cfg.ConnConfig.Tracer = k
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
		rn.Now, rn.OnConflict = c.Now, func() { conflicts.Add(1) }
		c.Runner = rn
	})
	b, worker := "/v1/businesses/acme", e.token("acme", api.RoleWorker)
	id := e.start("acme", 100)
	beat := func(n int) response {
		e.clock.Advance(6 * time.Second) // past the coalescing: every heartbeat is appended
		return e.do("POST", b+"/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": n, "failed_calls": 0})
	}
	e.must(beat(1), 200, "") // the API's Runner now holds the run's state
	// Another replica (the env's own Runner) moves the run on.
	e.clock.Advance(6 * time.Second)
	if _, err := e.runner.Execute(context.Background(), "acme", uuid.MustParse(id), domain.RecordHeartbeat{CompletedCalls: 2}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	k.armed.Store(true)
	r := beat(3)
	if k.kills.Load() != 1 {
		t.Fatalf("the retry lookup was not reached (%d sessions terminated); answer %d %s", k.kills.Load(), r.status, r.raw)
	}
	e.must(r, 503, api.CodeUnavailable)
	if n := conflicts.Load(); n != 0 {
		t.Fatalf("%d version conflicts counted for a database error", n)
	}
}
