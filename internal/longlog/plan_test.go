package longlog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/longlog"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
)

// TestLogReadsCostTheSameOnALongLog runs every read of the log the service
// makes outside rebuild and verify, through the real code, on a log of 100 k
// events and again once it has grown tenfold (seeded as appends write it,
// read models rebuilt and caught up as in production), and EXPLAINs (ANALYZE,
// BUFFERS) each statement it sent, with the statistics from before the
// growth and with fresh ones: none may scan the events table, and none
// may touch many more buffers on the long log than on the short one. Rebuild
// reads the whole log by nature: it must do it in a fixed number of
// statements however long the log is (one streamed pass, no per-chunk
// re-planning; verify folds through the same code).
func TestLogReadsCostTheSameOnALongLog(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds a million events")
	}
	ctx := context.Background()
	rec := &statementRecorder{}
	pool := recordingPool(t, rec)

	// Autovacuum is off so the test, not the daemon's timing, decides what
	// the planner knows: each size is measured with the statistics the log
	// had before it grew (none at first) and again once analyzed.
	// The log is unlogged here (set while it is empty, so nothing is
	// rewritten): plans and buffers are the same, and a million appends
	// without WAL keep the test within its budget on a busy machine.
	if _, err := pool.Exec(ctx, `ALTER TABLE events SET (autovacuum_enabled = false); ALTER TABLE events SET UNLOGGED`); err != nil {
		t.Fatal(err)
	}
	grow := func(label string, events int) (reads map[string]readCost, wholeLog map[string]int) {
		t.Helper()
		start := time.Now()
		if _, err := longlog.Seed(ctx, pool, longlog.Options{Events: events, Label: label}); err != nil {
			t.Fatal(err)
		}
		t.Logf("seeded %d events (%s) in %s", events, label, time.Since(start).Round(time.Millisecond))
		wholeLog = map[string]int{}
		rec.start("rebuild")
		if _, err := projections.Rebuild(ctx, pool, projections.RebuildOptions{}); err != nil {
			t.Fatal(err)
		}
		wholeLog["rebuild"] = len(rec.stop())
		reads = explainReads(t, pool, rec, label+"-7")
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE events`); err != nil { // what autovacuum does to a long-lived log
			t.Fatal(err)
		}
		for name, c := range explainReads(t, pool, rec, label+"-7") {
			prev := reads[name]
			if c.buffers < prev.buffers {
				c.buffers, c.plan = prev.buffers, prev.plan
			}
			c.seqScan = c.seqScan || prev.seqScan
			reads[name] = c
		}
		return reads, wholeLog
	}
	short, shortWhole := grow("short", 100_000)
	long, longWhole := grow("long", 900_000)

	names := make([]string, 0, len(short))
	for name := range short {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s, l := short[name], long[name]
		t.Logf("%-28s %6d buffers at 100 k events, %6d at 1 M", name, s.buffers, l.buffers)
		// A B-tree may gain a level; a read that grows with the log grows tenfold.
		if l.buffers > 2*s.buffers+16 {
			t.Errorf("%s touched %d buffers on a log of 1 M events, %d on 100 k: it reads more of the log as the log grows\n%s",
				name, l.buffers, s.buffers, l.plan)
		}
		if l.seqScan {
			t.Errorf("%s scans the events table\n%s", name, l.plan)
		}
	}
	for name, n := range shortWhole {
		if longWhole[name] != n {
			t.Errorf("%s sent %d statements that read the log at 100 k events, %d at 1 M: it re-reads per chunk", name, n, longWhole[name])
		}
	}
}

// readCost is what EXPLAIN (ANALYZE, BUFFERS) said of one read.
type readCost struct {
	buffers int64
	seqScan bool
	plan    string
}

// explainReads runs each read of the log through the real code (the
// consumer groups' read, the lag figure behind /readyz, /metrics and
// start-up, the audit's and replay's business reads, the
// run's events, consistency's position lookup, the retry check), records the
// statements that touch events, and EXPLAINs them on one connection in a
// transaction that is rolled back.
func explainReads(t *testing.T, pool *pgxpool.Pool, rec *statementRecorder, business string) map[string]readCost {
	t.Helper()
	ctx := context.Background()
	store := eventstore.New(pool)
	var lastRun struct {
		id       string
		from, to time.Time
	}
	if err := pool.QueryRow(ctx, `SELECT run_id::text, (convert_from(state, 'UTF8')::jsonb->>'started_at')::timestamptz, (convert_from(state, 'UTF8')::jsonb->>'ended_at')::timestamptz
		FROM run_snapshots WHERE business_id = $1 ORDER BY last_position DESC LIMIT 1`, business).Scan(&lastRun.id, &lastRun.from, &lastRun.to); err != nil {
		t.Fatal(err)
	}
	var head int64
	if err := pool.QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	stmts := map[string][]recorded{}
	run := func(name string, read func() error) {
		rec.start(name)
		err := read()
		stmts[name] = rec.stop()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, group := range projections.Names {
		sql, args, err := projections.ConsumerRead(group, 100, false)
		if err != nil {
			t.Fatal(err)
		}
		stmts["consumer read "+group] = []recorded{{sql: sql, args: args}}
	}
	run("lag", func() error { _, err := projections.Lags(ctx, pool, nil); return err })
	run("timeline of a run's hours", func() error {
		_, err := audit.Timeline(ctx, store, eventstore.BusinessQuery{BusinessID: business, Since: lastRun.from, Until: lastRun.to}, domain.DefaultPolicy())
		return err
	})
	run("timeline page", func() error {
		_, err := store.ReadBusiness(ctx, eventstore.BusinessQuery{BusinessID: business, After: &eventstore.Cursor{OccurredAt: lastRun.from}, Limit: 100})
		return err
	})
	run("replay", func() error {
		_, err := audit.Replay(ctx, store, business, lastRun.to.Add(-time.Minute), domain.DefaultPolicy())
		return err
	})
	run("run events", func() error {
		_, err := store.ReadStream(ctx, uuid.MustParse(lastRun.id))
		return err
	})
	run("position lookup", func() error { _, _, err := store.PositionOffset(ctx, head); return err })
	run("log page", func() error { _, err := store.ReadAll(ctx, head-100, 100); return err })

	out := map[string]readCost{}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for name, list := range stmts {
		if len(list) == 0 {
			t.Fatalf("%s sent no statement that reads events", name)
		}
		var c readCost
		for _, st := range list {
			cost := explain(t, conn, st)
			c.buffers += cost.buffers
			c.seqScan = c.seqScan || cost.seqScan
			c.plan += cost.plan + "\n"
		}
		out[name] = c
	}
	return out
}

// explain runs EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of st in a
// transaction it rolls back (the consumer read locks its offset row), once
// planned for its arguments and once with the generic plan a prepared
// statement switches to after five runs (pgx prepares every statement), and
// returns the costlier.
func explain(t *testing.T, conn *pgxpool.Conn, st recorded) readCost {
	t.Helper()
	var worst readCost
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		c := explainIn(t, conn, st, mode)
		if c.buffers >= worst.buffers {
			worst.buffers, worst.plan = c.buffers, c.plan
		}
		worst.seqScan = worst.seqScan || c.seqScan
	}
	return worst
}

// recordingPool is a pool on a fresh test database whose statements rec
// records.
func recordingPool(t *testing.T, rec *statementRecorder) *pgxpool.Pool {
	t.Helper()
	return pgtest.TracedPool(t, pgtest.URL(t), rec)
}

func explainIn(t *testing.T, conn *pgxpool.Conn, st recorded, mode string) readCost {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+st.sql, st.args...).Scan(&raw); err != nil {
		t.Fatalf("explain %s: %v", st.sql, err)
	}
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("explain output %s: %v", raw, err)
	}
	c := readCost{buffers: doc[0].Plan.SharedHit + doc[0].Plan.SharedRead, plan: mode + ": " + oneLine(st.sql) + "\n" + doc[0].Plan.String("")}
	doc[0].Plan.walk(func(n planNode) {
		if n.NodeType == "Seq Scan" && n.Relation == "events" {
			c.seqScan = true
		}
	})
	return c
}

type planNode struct {
	NodeType   string     `json:"Node Type"`
	Relation   string     `json:"Relation Name"`
	Index      string     `json:"Index Name"`
	IndexCond  string     `json:"Index Cond"`
	Filter     string     `json:"Filter"`
	Rows       float64    `json:"Actual Rows"`
	SharedHit  int64      `json:"Shared Hit Blocks"`
	SharedRead int64      `json:"Shared Read Blocks"`
	Plans      []planNode `json:"Plans"`
}

// String is the plan as an indented tree, a node a line.
func (n planNode) String(indent string) string {
	s := fmt.Sprintf("%s%s %s %s rows=%.0f buffers=%d", indent, n.NodeType, n.Relation, n.Index, n.Rows, n.SharedHit+n.SharedRead)
	if n.IndexCond != "" {
		s += " cond " + n.IndexCond
	}
	if n.Filter != "" {
		s += " filter " + n.Filter
	}
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

var readsEvents = regexp.MustCompile(`(?i)\bfrom\s+events\b|\bjoin\s+events\b|,\s*events\b`)

// recorded is one statement a read sent.
type recorded struct {
	sql  string
	args []any
}

// statementRecorder is a pgx tracer that records, between start and stop,
// the statements that read the events table (or, when match is set, the
// statements it matches).
type statementRecorder struct {
	match  *regexp.Regexp
	mu     sync.Mutex
	active bool
	list   []recorded
}

func (r *statementRecorder) start(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active, r.list = true, nil
}

func (r *statementRecorder) stop() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = false
	return r.list
}

func (r *statementRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	match := r.match
	if match == nil {
		match = readsEvents
	}
	if r.active && match.MatchString(d.SQL) && !strings.HasPrefix(strings.TrimSpace(d.SQL), "EXPLAIN") {
		r.list = append(r.list, recorded{sql: d.SQL, args: d.Args})
	}
	return ctx
}

func (r *statementRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
