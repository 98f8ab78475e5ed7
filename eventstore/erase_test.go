package eventstore_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/advisory"
)

// readModelRows counts the business's rows in the read models and the other
// per-business tables.
func (w *lifecycleWorld) rowsOf(business string) map[string]int {
	w.t.Helper()
	out := map[string]int{}
	for _, table := range []string{"events", "run_snapshots", "runs", "active_runs", "idempotency_keys", "compacted_runs"} {
		var n int
		if err := w.pool.QueryRow(w.ctx, `SELECT count(*) FROM `+table+` WHERE business_id = $1`, business).Scan(&n); err != nil {
			w.t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

func (w *lifecycleWorld) idempotencyKey(business string) {
	w.t.Helper()
	if _, err := w.pool.Exec(w.ctx, `INSERT INTO idempotency_keys (business_id, method, path, key, request_hash, status, header, body, created_at, expires_at)
		VALUES ($1, 'POST', '/v1/businesses/'||$1||'/runs', 'k1', '\x00', 201, '{}', 'x', now(), now() + interval '1 day')`, business); err != nil {
		w.t.Fatal(err)
	}
}

func TestEraseRemovesTheBusinessAndNothingElse(t *testing.T) {
	w := newLifecycleWorld(t)
	w.history("gone")
	w.history("gone")
	w.idempotencyKey("gone")
	w.idempotencyKey("kept")
	keptRun := w.start("kept", 0, 0)
	done := 0
	w.work("kept", keptRun, &done, time.Minute, 5*time.Second, false)
	w.rebuild()
	if _, err := w.store.Compact(w.ctx, eventstore.CompactParams{EndedBefore: w.clock.Now(), Actor: "operator:test"}); err != nil {
		t.Fatal(err)
	}
	keptBefore, keptRows := w.events("kept"), w.rowsOf("kept")
	goneRows := w.rowsOf("gone")

	res, err := w.rn.Erase(w.ctx, eventstore.EraseParams{BusinessID: "gone", Reason: "left the service (ticket 42)", Actor: "operator:alice"})
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range goneRows {
		if res.Counts[table] != int64(n) {
			t.Errorf("erasure counted %d rows of %s; the business had %d", res.Counts[table], table, n)
		}
	}
	if got := w.rowsOf("gone"); slices.ContainsFunc(mapValues(got), func(n int) bool { return n != 0 }) {
		t.Fatalf("rows of the erased business remain: %v", got)
	}
	if got := w.events("kept"); !slices.EqualFunc(got, keptBefore, sameRecorded) {
		t.Fatalf("another business's events changed: %d, were %d", len(got), len(keptBefore))
	}
	if got := w.rowsOf("kept"); !maps.Equal(got, keptRows) {
		t.Fatalf("another business's rows changed: %v, were %v", got, keptRows)
	}
	recs, err := w.store.LifecycleRecords(w.ctx, "gone", uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Kind != "erasure" || recs[0].Reason != "left the service (ticket 42)" || recs[0].Actor != "operator:alice" {
		t.Fatalf("records of the erased business: %+v; want its erasure alone (its compactions went with it)", recs)
	}
	w.verifyClean()
	w.rebuild()
	w.verifyClean()

	// The business starts afresh.
	run := w.start("gone", 0, 0)
	w.do("gone", run, domain.CompleteRun{Outcome: domain.OutcomeCompleted})
	w.rebuild()
	w.verifyClean()
	if got := w.rowsOf("gone"); got["runs"] != 1 || got["events"] != 2 {
		t.Fatalf("after a fresh start: %v", got)
	}
}

func TestEraseRefusesAndChangesNothing(t *testing.T) {
	w := newLifecycleWorld(t)
	w.history("b")
	open := w.start("b", 0, 0)
	w.rebuild()
	before := w.rowsOf("b")
	for name, tc := range map[string]struct {
		p    eventstore.EraseParams
		want error
	}{
		"open run":  {eventstore.EraseParams{BusinessID: "b", Reason: "r"}, eventstore.ErrOpenRun},
		"no reason": {eventstore.EraseParams{BusinessID: "b", Reason: " "}, domain.ErrValidation},
		"bad id":    {eventstore.EraseParams{BusinessID: "b c", Reason: "r"}, domain.ErrValidation},
		"unknown":   {eventstore.EraseParams{BusinessID: "nobody", Reason: "r"}, eventstore.ErrNothingToErase},
	} {
		if _, err := w.rn.Erase(w.ctx, tc.p); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", name, err, tc.want)
		}
	}
	if got := w.rowsOf("b"); !maps.Equal(got, before) {
		t.Fatalf("a refused erasure changed rows: %v, were %v", got, before)
	}
	recs, err := w.store.LifecycleRecords(w.ctx, "nobody", uuid.Nil)
	if err != nil || len(recs) != 0 {
		t.Fatalf("records of a refused erasure: %v, %v", recs, err)
	}

	// --force ends the open run as cancelled with the reason, through the
	// commands, then erases.
	res, err := w.rn.Erase(w.ctx, eventstore.EraseParams{BusinessID: "b", Reason: "gdpr request", Actor: "operator:alice", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cancelled != open.String() || res.Counts["events"] != int64(before["events"]+2) {
		t.Fatalf("forced erasure %+v; want run %s cancelled (2 more events) and all %d+2 events removed", res, open, before["events"])
	}
	w.verifyClean()
}

// TestEraseWaitsForNoRebuild: a rebuild's shadow tables would bring the
// business back, so an erasure during one is refused.
func TestEraseRefusedDuringRebuild(t *testing.T) {
	w := newLifecycleWorld(t)
	w.history("b")
	conn, err := w.pool.Acquire(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(w.ctx, `SELECT pg_advisory_lock($1)`, int64(advisory.Rebuild)); err != nil {
		t.Fatal(err)
	}
	_, err = w.rn.Erase(w.ctx, eventstore.EraseParams{BusinessID: "b", Reason: "r"})
	if !errors.Is(err, eventstore.ErrRebuildRunning) || !strings.Contains(err.Error(), "rebuild") {
		t.Fatalf("erase during a rebuild: %v; want ErrRebuildRunning", err)
	}
	conn.Exec(w.ctx, `SELECT pg_advisory_unlock_all()`)
}

func mapValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestEraseMakesAProjectorBatchInFlightReadAgain is the race that could bring
// an erased business back: a consumer group's batch whose snapshot predates
// the erasure, waiting for its offset row while the erasure commits. It must
// not see the erased events: it fails to serialise (and the subscriber reads
// again) or sees none.
func TestEraseMakesAProjectorBatchInFlightReadAgain(t *testing.T) {
	w := newLifecycleWorld(t)
	w.history("gone")
	w.rebuild()
	paused, release := make(chan struct{}), make(chan struct{})
	erased := make(chan error, 1)
	go func() {
		_, err := w.rn.Erase(w.ctx, eventstore.EraseParams{BusinessID: "gone", Reason: "r", Hook: func(string) {
			close(paused)
			<-release
		}})
		erased <- err
	}()
	<-paused
	tx, err := w.pool.BeginTx(w.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(w.ctx)
	seen := make(chan error, 1)
	var n int
	go func() {
		// The subscriber's statement: lock the group's offset, read events after it.
		seen <- tx.QueryRow(w.ctx, `WITH last AS (SELECT offset_acked FROM projection_offsets WHERE consumer_group = 'runs' FOR UPDATE)
			SELECT count(*) FROM events, last WHERE business_id = 'gone'`).Scan(&n)
	}()
	// Wait until the batch waits for the offset row (or, were the erasure
	// not to touch it, has read the log).
	var early error
	done := false
	for deadline := time.Now().Add(30 * time.Second); !done; {
		var waiting int
		if err := w.pool.QueryRow(w.ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case early = <-seen:
			done = true
		default:
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch neither waited for the offset row nor read the log")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-erased; err != nil {
		t.Fatal(err)
	}
	err = early
	if !done {
		err = <-seen
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "40001":
	case err != nil:
		t.Fatal(err)
	case n != 0:
		t.Fatalf("a batch in flight read %d events of the erased business", n)
	}
}
