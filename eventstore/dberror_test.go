package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/dberr"
	"github.com/runledger/runledger/internal/pgtest"
)

// killer is a pgx tracer that, while armed, terminates the backend of any
// connection about to run a statement containing match (pg_terminate_backend
// from another connection, waiting until it is gone): a real database error
// at the moment the test chooses.
type killer struct {
	admin *pgxpool.Pool
	match string
	armed atomic.Bool
	kills atomic.Int32
}

func (k *killer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if k.armed.Load() && strings.Contains(data.SQL, k.match) {
		var ok bool
		if err := k.admin.QueryRow(context.Background(), `SELECT pg_terminate_backend($1, 5000)`, conn.PgConn().PID()).Scan(&ok); err == nil && ok {
			k.kills.Add(1)
		}
	}
	return ctx
}

func (k *killer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A database error while an append checks whether it is a retry (the
// lookup of its event ids) is that error, not a version conflict: the
// Runner would retry a conflict at once and count it, and a client would
// get 409 version_conflict, which it does not retry, instead of 503.
func TestDatabaseErrorIsNotAVersionConflict(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	admin := pgtest.Pool(t, url)
	k := &killer{admin: admin, match: "FROM events WHERE event_id = ANY"}
	store := eventstore.New(pgtest.TracedPool(t, url, k))

	tests := []struct {
		name   string
		append func(run domain.Run) error
	}{
		{"Append at a stale expected version", func(run domain.Run) error {
			_, err := store.Append(ctx, run.ID, run.Version-1, heartbeat(50))
			return err
		}},
		{"AppendTo from a stale state", func(run domain.Run) error {
			stale := run
			stale.Version--
			_, err := store.AppendTo(ctx, run.ID, stale, heartbeat(51))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uuid.New()
			if _, err := store.Append(ctx, id, 0, started(id, "b-"+id.String())); err != nil {
				t.Fatal(err)
			}
			res, err := store.Append(ctx, id, 1, heartbeat(1))
			if err != nil {
				t.Fatal(err)
			}
			k.armed.Store(true)
			before := k.kills.Load()
			err = tt.append(res.Run)
			k.armed.Store(false)
			if k.kills.Load() == before {
				t.Fatal("no connection was terminated: the retry lookup did not run")
			}
			if errors.Is(err, eventstore.ErrVersionConflict) {
				t.Fatalf("err = %v; a database error reported as a version conflict", err)
			}
			if kind, ok := dberr.Transient(err); !ok {
				t.Fatalf("err = %v; want the database's error, transient (503 in the API)", err)
			} else {
				t.Logf("err = %v (transient: %s)", err, kind)
			}
		})
	}
}
