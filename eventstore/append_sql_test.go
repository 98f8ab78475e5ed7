package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/longlog"
	"github.com/runledger/runledger/internal/pgtest"
)

// The builder writes the statement the hand-written text was: the same
// parts, the same parameters, in every form (compared without whitespace).
func TestAppendBuilderWritesTheStatementItReplaced(t *testing.T) {
	squeeze := func(s string) string {
		return strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s)
	}
	for _, strict := range []bool{false, true} {
		for _, notify := range []bool{false, true} {
			if got, want := squeeze(buildAppend(strict, notify)), squeeze(appendSQLAtE93e957(strict, notify)); got != want {
				t.Errorf("strict=%v notify=%v: built\n%s\nwant\n%s", strict, notify, buildAppend(strict, notify), appendSQLAtE93e957(strict, notify))
			}
		}
	}
}

// appendSQLAtE93e957 is the append statement as it was written by hand
// before buildAppend, kept as the reference the builder must reproduce.
func appendSQLAtE93e957(strict, notify bool) string {
	onConflict := ` ON CONFLICT DO NOTHING`
	if strict {
		onConflict = ``
	}
	final := `SELECT stream_id, max(position) FROM written GROUP BY stream_id`
	if notify {
		final = `, notified AS MATERIALIZED (
		SELECT pg_notify($17, top::text) FROM (SELECT max(position) AS top FROM written) m WHERE top IS NOT NULL
	)
	SELECT w.stream_id, max(w.position) FROM written w, notified GROUP BY w.stream_id`
	}
	return `WITH input AS MATERIALIZED (
		SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bool[], $5::timestamptz[], $6::timestamptz[], $7::bytea[], $8::text[])
			AS i(run_id, expected, next_version, ended, last_heartbeat_at, stale_at, state, business_id)
	), ev AS MATERIALIZED (
		SELECT e.*, nextval(pg_get_serial_sequence('events', 'position')) AS pos
		FROM unnest($9::uuid[], $10::uuid[], $11::bigint[], $12::text[], $13::int[], $14::jsonb[], $15::jsonb[], $16::timestamptz[])
			WITH ORDINALITY AS e(run_id, id, v, t, sv, d, m, o, n)
		ORDER BY e.n
	), last AS (
		SELECT run_id, max(pos) AS pos FROM ev GROUP BY run_id
	), moved AS (
		UPDATE run_snapshots rs SET version = i.next_version, ended = i.ended, last_heartbeat_at = i.last_heartbeat_at,
			stale_at = i.stale_at, state = i.state, last_position = last.pos
		FROM input i JOIN last USING (run_id)
		WHERE rs.run_id = i.run_id AND i.expected > 0 AND rs.version = i.expected AND NOT rs.ended
		RETURNING rs.run_id
	), created AS (
		INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, stale_at, state, last_position)
		SELECT i.run_id, i.business_id, i.next_version, i.ended, i.last_heartbeat_at, i.stale_at, i.state, last.pos
		FROM input i JOIN last USING (run_id) WHERE i.expected = 0` + onConflict + `
		RETURNING run_id
	), ok AS (
		SELECT run_id FROM moved UNION ALL SELECT run_id FROM created
	), written AS (
		INSERT INTO events (position, event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at)
		SELECT ev.pos, ev.id, ev.run_id, ev.v, i.business_id, ev.t, ev.sv, ev.d, ev.m, ev.o
		FROM ev JOIN ok USING (run_id) JOIN input i USING (run_id)
		ORDER BY ev.pos
		RETURNING stream_id, position
	)
	` + final
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan.
type planNode struct {
	NodeType string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Plans    []planNode `json:"Plans"`
}

func (n planNode) String(indent string) string {
	s := fmt.Sprintf("%s%s %s %s", indent, n.NodeType, n.Relation, n.Index)
	for _, c := range n.Plans {
		s += "\n" + c.String(indent+"  ")
	}
	return s
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// TestAppendPlansUseTheIndexes EXPLAINs (ANALYZE, in a transaction rolled
// back) every form of the built append statement on a seeded log of 20,000
// ended runs and 2,000 open ones, with a batch that moves an open run's snapshot and creates a new
// run's, planned for its arguments and as the generic plan a prepared
// statement switches to: the snapshot is found through an index, and
// nothing scans the events or run_snapshots tables, so an append costs the
// same however long the log.
func TestAppendPlansUseTheIndexes(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	if _, err := longlog.Seed(ctx, pool, longlog.Options{Events: 60_000, EventsPerRun: 3, Businesses: 1000, Label: "plan"}); err != nil {
		t.Fatal(err)
	}
	// 2,000 open runs besides (the seed ends all its runs).
	if _, err := pool.Exec(ctx, `INSERT INTO run_snapshots (run_id, business_id, version, ended, last_heartbeat_at, stale_at, state, last_position)
		SELECT gen_random_uuid(), 'plan-open-' || g, 1, false, now(), now() + interval '15 minutes', '{}', 0 FROM generate_series(1, 2000) g`); err != nil {
		t.Fatal(err)
	}
	store := New(pool)
	open := uuid.New()
	start := domain.RunStarted{RunID: open, BusinessID: "plan-open", WorkerID: "w", TotalCalls: 10, OccurredAt: time.Now()}
	res, err := store.Append(ctx, open, 0, []NewEvent{{ID: uuid.New(), Event: start}})
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"events", "run_snapshots"} {
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
			t.Fatal(err)
		}
	}
	beat, err := store.newAppend(open, res.Run, []NewEvent{{ID: uuid.New(), Event: domain.Heartbeat{CompletedCalls: 1, OccurredAt: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	fresh := uuid.New()
	created, err := store.newAppend(fresh, domain.Run{}, []NewEvent{{ID: uuid.New(), Event: domain.RunStarted{RunID: fresh,
		BusinessID: "plan-new", WorkerID: "w", TotalCalls: 10, OccurredAt: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	args := appendArgs([]*appendReq{beat, created})

	for _, strict := range []bool{false, true} {
		for _, notify := range []bool{false, true} {
			sql, a := appendStatements[b2i(strict)][b2i(notify)], args
			if notify {
				a = append(append([]any{}, args...), "runledger_plan_test")
			}
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				name := fmt.Sprintf("strict=%v notify=%v %s", strict, notify, mode)
				plan, applied := explainAppend(t, pool, mode, sql, a)
				var indexed bool
				plan.walk(func(n planNode) {
					if n.NodeType == "Seq Scan" && (n.Relation == "events" || n.Relation == "run_snapshots") {
						t.Errorf("%s: a Seq Scan on %s\n%s", name, n.Relation, plan.String(""))
					}
					if strings.HasPrefix(n.NodeType, "Index") && n.Relation == "run_snapshots" {
						indexed = indexed || snapshotIndexes[n.Index]
					}
				})
				if !indexed {
					t.Errorf("%s: the snapshot to move is not found through an index\n%s", name, plan.String(""))
				}
				t.Logf("%s:\n%s", name, plan.String("  "))
				if applied != 2 {
					t.Errorf("%s: applied %d commands, want both", name, applied)
				}
			}
		}
	}
}

// snapshotIndexes are the indexes through which the append may find the
// snapshot it moves: the primary key (one row), or the partial index of open
// runs (its cost follows the open runs, never the log).
var snapshotIndexes = map[string]bool{"run_snapshots_pkey": true, "run_snapshots_one_open_per_business": true}

// explainAppend EXPLAINs (ANALYZE) the statement under plan_cache_mode
// mode in a transaction it rolls back, and returns its plan and how many
// commands it applied (the rows the statement returned).
func explainAppend(t *testing.T, pool *pgxpool.Pool, mode, sql string, args []any) (planNode, int) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+sql, args...).Scan(&raw); err != nil {
		t.Fatalf("explain: %v", err)
	}
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("explain output %s: %v", raw, err)
	}
	var rows struct {
		Rows float64 `json:"Actual Rows"`
	}
	var top []struct {
		Plan json.RawMessage `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(top[0].Plan, &rows); err != nil {
		t.Fatal(err)
	}
	return doc[0].Plan, int(rows.Rows)
}
