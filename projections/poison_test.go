package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// An event whose projection SQL fails every time (here a test-only trigger
// refusing one worker's rows) is recorded in projection_poison within
// seconds, and the events after it still apply.
func TestPoisonEventWhoseSQLFailsIsRecordedAndSkipped(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.worker_id = 'poison' THEN RAISE EXCEPTION 'test: refusing worker poison'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION refuse_poison();`); err != nil {
		t.Fatal(err)
	}
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	start := func(business, worker string) uuid.UUID {
		id := uuid.New()
		if _, err := rn.Start(ctx, domain.StartRun{RunID: id, BusinessID: business, WorkerID: worker, TotalCalls: 5}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := start("a", "w1")
	poison := start("b", "poison")
	after := start("c", "w2")
	startProjector(t, pool, projections.Options{Projections: []string{projections.Runs}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_poison p JOIN events e ON e.position = p.position
			WHERE p.consumer_group = 'runs' AND e.stream_id = $1`, poison).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poison event was not recorded within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitCaughtUp(t, pool, projections.Runs)
	for business, id := range map[string]uuid.UUID{"a": before, "c": after} {
		if _, ok, err := projections.GetRun(ctx, pool, business, id); !ok || err != nil {
			t.Fatalf("run of %s not projected beside the poison event (%v)", business, err)
		}
	}
	if _, ok, _ := projections.GetRun(ctx, pool, "b", poison); ok {
		t.Fatal("the poison run was projected")
	}
	// The group keeps going afterwards.
	later := start("d", "w3")
	waitCaughtUp(t, pool, projections.Runs)
	if _, ok, err := projections.GetRun(ctx, pool, "d", later); !ok || err != nil {
		t.Fatalf("a run started after the poison event was not projected (%v)", err)
	}
}
