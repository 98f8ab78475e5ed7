package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/bounded"
	"github.com/runledger/runledger/internal/pguuid"
)

// maxCachedRows bounds a live projection's row cache.
const maxCachedRows = 50_000

// rowCache holds the rows a live projection last committed, by key. It is a
// guess about the table, used only for an event that directly follows the
// cached row, and every write made from it is conditional on the row being
// unchanged.
type rowCache = bounded.Map[string, RunRow]

func newRowCache() *rowCache { return bounded.New[string, RunRow](maxCachedRows) }

// rowSet is one transaction's view of a read model's table. An event's row
// is the one this transaction already changed, else the cached row when the
// event directly follows it, else the table's. Changes are deferred and
// written by flush in at most three statements (insert, update, delete),
// each conditional on the table still holding what this view read, so a
// batch of 100 heartbeats on 30 runs costs one UPDATE instead of 100.
type rowSet struct {
	proj    projection
	table   string
	cache   *rowCache // nil: no cache (the rebuild's catch-up)
	pending map[string]*pendingRow
	order   []string
}

// pendingRow is a deferred change: the row the table held when it was read
// (found=false: none) and what it must become.
type pendingRow struct {
	key      string
	found    bool
	expected RunRow
	change   change
}

// current is the row as this transaction sees it after its deferred change.
func (p *pendingRow) current() (RunRow, bool) {
	switch p.change.op {
	case put:
		return p.change.row, true
	case del:
		return RunRow{}, false
	}
	return p.expected, p.found
}

// committedRow is a row a flush wrote: its key and final state.
type committedRow struct {
	key    string
	change change
}

func newRowSet(proj projection, table string, cache *rowCache) *rowSet {
	return &rowSet{proj: proj, table: table, cache: cache, pending: map[string]*pendingRow{}}
}

// apply decides what rec does to its row and defers the change. It returns
// the change (op keep when there is none) and a *GapError or a query error.
func (s *rowSet) apply(ctx context.Context, tx pgx.Tx, rec eventstore.Recorded) (change, error) {
	key := s.proj.key(rec)
	pr, ok := s.pending[key]
	if !ok {
		cur, found, err := s.read(ctx, tx, key, rec)
		if err != nil {
			return change{}, err
		}
		pr = &pendingRow{key: key, found: found, expected: cur}
	}
	cur, found := pr.current()
	ch, err := s.proj.next(cur, found, rec)
	if gap := (*GapError)(nil); errors.As(err, &gap) {
		compacted, cerr := runCompacted(ctx, tx, rec)
		if cerr != nil {
			return change{}, cerr
		}
		if compacted {
			// The missing versions are heartbeats compaction removed: the
			// row folds on from this event as it would have after them.
			cur.Version = rec.Version - 1
			ch, err = s.proj.next(cur, found, rec)
		}
	}
	if err != nil || ch.op == keep {
		return ch, err
	}
	pr.change = ch
	if !ok {
		s.pending[key] = pr
		s.order = append(s.order, key)
	}
	return ch, nil
}

// runCompacted reports whether rec's run is one compaction removed
// heartbeats from. Compaction touches only ended runs, whose events had all
// committed before it ran, so a hole in such a run's versions is one it made;
// in any other run a hole stays a GapError.
func runCompacted(ctx context.Context, tx pgx.Tx, rec eventstore.Recorded) (bool, error) {
	var compacted bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM compacted_runs WHERE run_id = $1 AND business_id = $2)`,
		[16]byte(rec.StreamID), rec.BusinessID).Scan(&compacted)
	if err != nil {
		return false, fmt.Errorf("compacted_runs: read %s: %w", rec.StreamID, err)
	}
	return compacted, nil
}

// read returns the row of key: the cached one if rec directly follows it,
// else the table's.
func (s *rowSet) read(ctx context.Context, tx pgx.Tx, key string, rec eventstore.Recorded) (RunRow, bool, error) {
	if s.cache != nil {
		if r, ok := s.cache.Get(key); ok && r.ID == rec.StreamID && r.Version+1 == rec.Version {
			return r, true, nil
		}
	}
	r, found, err := queryRunRow(ctx, tx, `SELECT `+runColumnList+` FROM `+s.table+` WHERE `+s.proj.keyColumn+` = $1`, key)
	if err != nil {
		return RunRow{}, false, fmt.Errorf("%s: read %s: %w", s.table, key, err)
	}
	return r, found, nil
}

// staleViewError means a deferred write did not find the row its view read:
// another writer changed the table (the cache was stale). The transaction
// must roll back; its events are then applied again from the table.
type staleViewError struct {
	table       string
	wrote, want int64
}

func (e *staleViewError) Error() string {
	return fmt.Sprintf("%s: %d of %d deferred writes found the row they read: stale cache", e.table, e.wrote, e.want)
}

// flush writes the deferred changes and returns them. It returns a
// *staleViewError if the table did not hold a row a change expected.
func (s *rowSet) flush(ctx context.Context, tx pgx.Tx) ([]committedRow, error) {
	w := s.writes()
	if len(w.statements) == 0 {
		return w.rows, nil
	}
	var q pgx.Batch
	w.queue(&q)
	br := tx.SendBatch(ctx, &q)
	err := w.check(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: flush: %w", s.table, cerr)
	}
	if err != nil {
		return nil, err
	}
	return w.rows, nil
}

// writes takes the deferred changes as at most four statements (insert,
// update, progress update, delete), to be sent in one round trip, with
// what they must write.
func (s *rowSet) writes() rowWrites {
	w := rowWrites{table: s.table}
	if len(s.order) == 0 {
		return w
	}
	var inserts, updates, progress, deletes []*pendingRow
	w.rows = make([]committedRow, 0, len(s.order))
	for _, k := range s.order {
		pr := s.pending[k]
		switch {
		case pr.change.op == put && !pr.found:
			inserts = append(inserts, pr)
		case pr.change.op == put && onlyProgressMoved(pr.expected, pr.change.row):
			progress = append(progress, pr)
		case pr.change.op == put:
			updates = append(updates, pr)
		case pr.change.op == del && pr.found:
			deletes = append(deletes, pr)
		}
		w.rows = append(w.rows, committedRow{key: k, change: pr.change})
	}
	s.discard()
	w.want = int64(len(inserts) + len(updates) + len(progress) + len(deletes))
	for _, st := range []statement{s.insert(inserts), s.update(updates), s.updateProgress(progress), s.delete(deletes)} {
		if st.sql != "" {
			w.statements = append(w.statements, st)
		}
	}
	return w
}

// statement is one SQL statement with its arguments.
type statement struct {
	sql  string
	args []any
}

// rowWrites are a row set's deferred changes as statements: rows is what
// they write, want how many rows they must touch between them.
type rowWrites struct {
	table      string
	statements []statement
	rows       []committedRow
	want       int64
}

// queue adds the statements to q.
func (w rowWrites) queue(q *pgx.Batch) {
	for _, st := range w.statements {
		q.Queue(st.sql, st.args...)
	}
}

// check reads the statements' results from br, in queue order: a
// *staleViewError if they did not touch every row they must.
func (w rowWrites) check(br pgx.BatchResults) error {
	var wrote int64
	for range w.statements {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("%s: flush: %w", w.table, err)
		}
		wrote += tag.RowsAffected()
	}
	if wrote != w.want {
		return &staleViewError{table: w.table, wrote: wrote, want: w.want}
	}
	return nil
}

// discard forgets the deferred changes.
func (s *rowSet) discard() {
	clear(s.pending)
	s.order = s.order[:0]
}

func nextRows(prs []*pendingRow) []RunRow {
	rows := make([]RunRow, len(prs))
	for i, pr := range prs {
		rows[i] = pr.change.row
	}
	return rows
}

func (s *rowSet) insert(prs []*pendingRow) statement {
	if len(prs) == 0 {
		return statement{}
	}
	return statement{`INSERT INTO ` + s.table + ` (` + runColumnList + `) SELECT * FROM unnest(` + unnestParams(0) + `)
		ON CONFLICT DO NOTHING`, columnArrays(nextRows(prs))}
}

// update replaces every listed row whose run_id and version are still the expected ones.
func (s *rowSet) update(prs []*pendingRow) statement {
	if len(prs) == 0 {
		return statement{}
	}
	args, expIDs, expVersions := columnArrays(nextRows(prs)), make([]uuid.UUID, len(prs)), make([]int64, len(prs))
	for i, pr := range prs {
		expIDs[i], expVersions[i] = pr.expected.ID, pr.expected.Version
	}
	n := len(runColumns)
	var set strings.Builder
	for _, c := range runColumns {
		if c.name == s.proj.keyColumn {
			continue
		}
		if set.Len() > 0 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "%s = v.%s", c.name, c.name)
	}
	sql := fmt.Sprintf(`UPDATE %[1]s AS t SET %[2]s
		FROM unnest(%[3]s, $%[4]d::uuid[], $%[5]d::bigint[]) AS v(%[6]s, exp_run_id, exp_version)
		WHERE t.%[7]s = v.%[7]s AND t.run_id = v.exp_run_id AND t.version = v.exp_version`,
		s.table, set.String(), unnestParams(0), n+1, n+2, runColumnList, s.proj.keyColumn)
	return statement{sql, append(args, pguuid.Raw(expIDs), expVersions)}
}

// updateProgress is update for rows of which a heartbeat moved only the
// progress columns (onlyProgressMoved): it writes those alone, so the
// statement carries nine arrays instead of twenty-six. Under B1 nearly every
// write is one (per heartbeat, serve encodes and PostgreSQL decodes a third
// of the values).
func (s *rowSet) updateProgress(prs []*pendingRow) statement {
	if len(prs) == 0 {
		return statement{}
	}
	n := len(prs)
	var (
		keys                any
		runIDs              = make([][16]byte, n)
		completed, failed   = make([]int, n), make([]int, n)
		heartbeatAt         = make([]time.Time, n)
		progressAt          = make([]*time.Time, n)
		versions, positions = make([]int64, n), make([]int64, n)
		expVersions         = make([]int64, n)
		businesses          []string
	)
	if s.proj.keyColumn == "business_id" {
		businesses = make([]string, n)
		keys = businesses
	} else {
		keys = runIDs
	}
	for i, pr := range prs {
		r := pr.change.row
		runIDs[i] = r.ID
		if businesses != nil {
			businesses[i] = r.BusinessID
		}
		completed[i], failed[i] = r.CompletedCalls, r.FailedCalls
		heartbeatAt[i], progressAt[i] = r.LastHeartbeatAt, optionalTime(r.LastProgressAt)
		versions[i], positions[i], expVersions[i] = r.Version, r.LastPosition, pr.expected.Version
	}
	keyType := "uuid"
	if businesses != nil {
		keyType = "text"
	}
	return statement{`UPDATE ` + s.table + ` AS t SET completed_calls = v.completed_calls, failed_calls = v.failed_calls,
		last_heartbeat_at = v.last_heartbeat_at, last_progress_at = v.last_progress_at, version = v.version,
		last_position = v.last_position
		FROM unnest($1::` + keyType + `[], $2::uuid[], $3::int[], $4::int[], $5::timestamptz[], $6::timestamptz[], $7::bigint[],
			$8::bigint[], $9::bigint[])
			AS v(k, run_id, completed_calls, failed_calls, last_heartbeat_at, last_progress_at, version, last_position, exp_version)
		WHERE t.` + s.proj.keyColumn + ` = v.k AND t.run_id = v.run_id AND t.version = v.exp_version`,
		[]any{keys, runIDs, completed, failed, heartbeatAt, progressAt, versions, positions, expVersions}}
}

// delete removes every listed row whose run_id and version are still the expected ones.
func (s *rowSet) delete(prs []*pendingRow) statement {
	if len(prs) == 0 {
		return statement{}
	}
	keys, ids, versions := make([]string, len(prs)), make([]uuid.UUID, len(prs)), make([]int64, len(prs))
	for i, pr := range prs {
		keys[i], ids[i], versions[i] = pr.key, pr.expected.ID, pr.expected.Version
	}
	keyType := "text"
	if s.proj.keyColumn == "run_id" {
		keyType = "uuid"
	}
	return statement{`DELETE FROM ` + s.table + ` AS t USING unnest($1::` + keyType + `[], $2::uuid[], $3::bigint[]) AS v(k, r, ver)
		WHERE t.` + s.proj.keyColumn + ` = v.k AND t.run_id = v.r AND t.version = v.ver`, []any{keys, pguuid.Raw(ids), versions}}
}

// unnestParams is "$1::uuid[], $2::text[], …" for the columns, numbered after offset.
func unnestParams(offset int) string {
	parts := make([]string, len(runColumns))
	for i, c := range runColumns {
		parts[i] = fmt.Sprintf("$%d::%s[]", offset+i+1, c.sqlType)
	}
	return strings.Join(parts, ", ")
}
