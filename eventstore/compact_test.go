package eventstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// lifecycleWorld is a log written the way the service writes it (a command
// per transaction, through the Runner, on a fake clock).
type lifecycleWorld struct {
	t     *testing.T
	ctx   context.Context
	pool  *pgxpool.Pool
	store *eventstore.Store
	rn    *runs.Runner
	clock *fakeclock.Clock
}

func newLifecycleWorld(t *testing.T) *lifecycleWorld {
	pool := pgtest.NewDB(t)
	clock := fakeclock.New(t0)
	store := eventstore.New(pool)
	rn := runs.NewRunner(store, domain.DefaultPolicy())
	rn.Now = clock.Now
	return &lifecycleWorld{t: t, ctx: context.Background(), pool: pool, store: store, rn: rn, clock: clock}
}

func (w *lifecycleWorld) start(business string, ttl, stall time.Duration) uuid.UUID {
	w.t.Helper()
	id := uuid.New()
	if _, err := w.rn.Start(w.ctx, domain.StartRun{RunID: id, BusinessID: business, WorkerID: "w-" + business,
		TotalCalls: 100000, StaleAfter: ttl, StallAfter: stall}, eventstore.Metadata{Actor: "worker:w"}); err != nil {
		w.t.Fatal(err)
	}
	return id
}

func (w *lifecycleWorld) do(business string, run uuid.UUID, cmd domain.Command) {
	w.t.Helper()
	if _, err := w.rn.Execute(w.ctx, business, run, cmd, eventstore.Metadata{Actor: "worker:w"}); err != nil {
		w.t.Fatalf("%T on %s: %v", cmd, run, err)
	}
}

// work heartbeats every interval for d, progressing unless stalled.
func (w *lifecycleWorld) work(business string, run uuid.UUID, done *int, d, interval time.Duration, stalled bool) {
	for end := w.clock.Now().Add(d); w.clock.Now().Before(end); {
		w.clock.Advance(interval)
		if !stalled {
			*done += 2
		}
		w.do(business, run, domain.RecordHeartbeat{CompletedCalls: *done})
	}
}

// history writes an ended run with steady work, a stall, a pause, a silence
// past its TTL and a revival, ended by its worker.
func (w *lifecycleWorld) history(business string) uuid.UUID {
	run := w.start(business, 2*time.Minute, time.Minute)
	done := 0
	w.work(business, run, &done, 10*time.Minute, 5*time.Second, false)
	w.work(business, run, &done, 3*time.Minute, 5*time.Second, true)
	w.do(business, run, domain.PauseRun{Reason: "lunch"})
	w.work(business, run, &done, 2*time.Minute, 5*time.Second, true)
	w.do(business, run, domain.ResumeRun{})
	w.work(business, run, &done, 5*time.Minute, 5*time.Second, false)
	w.clock.Advance(3 * time.Minute) // silent past the TTL, then back
	w.work(business, run, &done, 4*time.Minute, 5*time.Second, false)
	w.do(business, run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: done})
	return run
}

func (w *lifecycleWorld) events(business string) []eventstore.Recorded {
	w.t.Helper()
	evs, err := w.store.ReadBusiness(w.ctx, eventstore.BusinessQuery{BusinessID: business})
	if err != nil {
		w.t.Fatal(err)
	}
	return evs
}

// instants are every event instant, 1 µs either side, and random instants.
func instants(evs []eventstore.Recorded, rng *rand.Rand) []time.Time {
	var instants []time.Time
	for _, e := range evs {
		instants = append(instants, e.OccurredAt.Add(-time.Microsecond), e.OccurredAt, e.OccurredAt.Add(time.Microsecond))
	}
	first, last := evs[0].OccurredAt, evs[len(evs)-1].OccurredAt.Add(5*time.Minute)
	for range 100 {
		instants = append(instants, first.Add(time.Duration(rng.Int64N(int64(last.Sub(first))))).Truncate(time.Microsecond))
	}
	return instants
}

// answers replays business at each instant.
func (w *lifecycleWorld) answers(business string, instants []time.Time) map[time.Time]string {
	w.t.Helper()
	policy := domain.DefaultPolicy()
	out := map[time.Time]string{}
	for _, at := range instants {
		res, err := audit.Replay(w.ctx, w.store, business, at, policy)
		if err != nil {
			w.t.Fatal(err)
		}
		a := domain.Answer{}
		if res.Run != nil {
			a = policy.AnswerAt(*res.Run, res.At)
		}
		out[at] = formatAnswer(res.Status, a)
	}
	return out
}

func formatAnswer(status int, a domain.Answer) string { return fmt.Sprintf("%d %+v", status, a) }

func sameRecorded(a, b eventstore.Recorded) bool {
	return a.Position == b.Position && a.EventID == b.EventID && a.Version == b.Version && string(a.Data) == string(b.Data)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (w *lifecycleWorld) verifyClean() {
	w.t.Helper()
	diffs, err := projections.Verify(w.ctx, w.pool)
	if err != nil {
		w.t.Fatal(err)
	}
	if len(diffs) > 0 {
		w.t.Fatalf("verify: %d differences, first %v", len(diffs), diffs[0])
	}
}

func (w *lifecycleWorld) rebuild() {
	w.t.Helper()
	if _, err := projections.Rebuild(w.ctx, w.pool, projections.RebuildOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func TestCompactKeepsEveryReplayAnswer(t *testing.T) {
	w := newLifecycleWorld(t)
	rng := rand.New(rand.NewPCG(7, 23))
	w.history("old")
	openRun := w.start("open", 0, 0)
	openDone := 0
	w.work("open", openRun, &openDone, time.Minute, 5*time.Second, false)
	cutoff := w.clock.Now()
	w.clock.Advance(time.Minute)
	w.history("recent") // ends after the cutoff: untouched
	w.work("open", openRun, &openDone, time.Minute, 5*time.Second, false)
	w.rebuild() // the read models, and every consumer group's offset, past the whole log

	before := map[string][]eventstore.Recorded{}
	answers := map[string]map[time.Time]string{}
	at := map[string][]time.Time{}
	for _, b := range []string{"old", "recent", "open"} {
		before[b] = w.events(b)
		at[b] = instants(before[b], rng)
		answers[b] = w.answers(b, at[b])
	}
	res, err := w.store.Compact(w.ctx, eventstore.CompactParams{EndedBefore: cutoff, Actor: "operator:test", BatchRuns: 1})
	if err != nil {
		t.Fatal(err)
	}
	after := w.events("old")
	removed := len(before["old"]) - len(after)
	if res.Runs != 1 || res.EventsRemoved != int64(removed) || removed < len(before["old"])*8/10 || res.BytesRemoved <= 0 {
		t.Fatalf("compaction %+v removed %d of %d events of the old run; want 1 run, most of its heartbeats", res, removed, len(before["old"]))
	}
	// Kept events are the same rows at the same positions; nothing but heartbeats went.
	kept := map[int64]eventstore.Recorded{}
	for _, e := range after {
		kept[e.Position] = e
	}
	for _, e := range before["old"] {
		k, ok := kept[e.Position]
		switch {
		case !ok && e.Type != domain.TypeHeartbeat:
			t.Fatalf("%s at position %d removed", e.Type, e.Position)
		case ok && (k.EventID != e.EventID || k.Version != e.Version || string(k.Data) != string(e.Data)):
			t.Fatalf("position %d changed: %+v, was %+v", e.Position, k, e)
		}
	}
	for _, b := range []string{"recent", "open"} {
		if got := w.events(b); !slices.EqualFunc(got, before[b], sameRecorded) {
			t.Fatalf("business %s touched by the compaction: %d events, were %d", b, len(got), len(before[b]))
		}
	}
	for _, b := range []string{"old", "recent", "open"} {
		got := w.answers(b, at[b])
		for at, want := range answers[b] {
			if got[at] != want {
				t.Fatalf("business %s at %s: after compaction %s; before %s", b, at.Format(time.RFC3339Nano), got[at], want)
			}
		}
	}
	w.verifyClean()
	w.rebuild()
	w.verifyClean()

	again, err := w.store.Compact(w.ctx, eventstore.CompactParams{EndedBefore: w.clock.Now().Add(time.Hour), Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Runs != 1 { // only "recent" is new; "old" is recorded as compacted, "open" never qualifies
		t.Fatalf("second compaction %+v; want only the recent run", again)
	}
	w.verifyClean()
}

func TestCompactSkipsRunsAConsumerGroupHasNotApplied(t *testing.T) {
	w := newLifecycleWorld(t)
	w.history("old")
	w.rebuild()
	if _, err := w.pool.Exec(w.ctx, `INSERT INTO projection_offsets VALUES ('laggard', 0, '0')`); err != nil {
		t.Fatal(err)
	}
	n := len(w.events("old"))
	res, err := w.store.Compact(w.ctx, eventstore.CompactParams{EndedBefore: w.clock.Now().Add(time.Hour), Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Runs != 0 || res.Skipped != 1 || len(w.events("old")) != n {
		t.Fatalf("compaction %+v left %d of %d events; want the run skipped", res, len(w.events("old")), n)
	}
}

// TestLogRefusesDeletionOutsideTheLifecyclePath: the live path still cannot
// delete, and the compaction function refuses an open run and anything but
// its heartbeats.
func TestLogRefusesDeletionOutsideTheLifecyclePath(t *testing.T) {
	w := newLifecycleWorld(t)
	run := w.start("b", 0, 0)
	done := 0
	w.work("b", run, &done, time.Minute, 5*time.Second, false)
	evs := w.events("b")
	var id int64
	if err := w.pool.QueryRow(w.ctx, `INSERT INTO compactions (actor, ended_before) VALUES ('t', now()) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for name, sql := range map[string]string{
		"delete":              `DELETE FROM events WHERE position = ` + itoa(evs[1].Position),
		"update":              `UPDATE events SET data = data WHERE position = ` + itoa(evs[1].Position),
		"compact an open run": `SELECT lifecycle_compact_run(` + itoa(id) + `, 'b', '` + run.String() + `', ARRAY[` + itoa(evs[1].Position) + `]::bigint[], 1)`,
	} {
		if _, err := w.pool.Exec(w.ctx, sql); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	w.do("b", run, domain.CompleteRun{Outcome: domain.OutcomeCompleted, CompletedCalls: done})
	for name, pos := range map[string]int64{"the start": evs[0].Position, "another business's": evs[1].Position} {
		business := "b"
		if name == "another business's" {
			business = "other"
		}
		if _, err := w.pool.Exec(w.ctx, `SELECT lifecycle_compact_run($1, $2, $3, $4, 1)`, id, business, run, []int64{pos}); err == nil {
			t.Errorf("compact %s event: no error", name)
		}
	}
	if got := w.events("b"); len(got) != len(evs)+1 {
		t.Fatalf("%d events; want %d: something was deleted", len(got), len(evs)+1)
	}
}
