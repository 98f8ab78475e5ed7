package longlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/longlog"
	"github.com/runledger/runledger/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestSeedWritesWhatAppendsWrite checks the seeded log against the code that
// reads it: every payload is what domain.MarshalEvent writes for the event it
// decodes to, every metadata is eventstore.Metadata, each run's events fold
// into exactly the snapshot the seed wrote for it (as the event store loads
// it), and the appends spread over many transactions in position order.
func TestSeedWritesWhatAppendsWrite(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	opts := longlog.Options{Events: 2000, EventsPerRun: 20, Businesses: 7, EventsPerTx: 50}
	res, err := longlog.Seed(ctx, pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Runs != 100 || res.Events != 2000 {
		t.Fatalf("seed wrote %d runs, %d events; want 100, 2000", res.Runs, res.Events)
	}
	rows, err := pool.Query(ctx, `SELECT stream_id, stream_version, type, schema_version, data, metadata FROM events ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	folded := map[uuid.UUID]domain.Run{}
	types := map[string]int{}
	n := 0
	for rows.Next() {
		var (
			stream     uuid.UUID
			version    int64
			typ        string
			schema     int
			data, meta []byte
		)
		if err := rows.Scan(&stream, &version, &typ, &schema, &data, &meta); err != nil {
			t.Fatal(err)
		}
		n++
		ev, err := domain.UnmarshalEvent(typ, schema, data)
		if err != nil {
			t.Fatalf("event %d of %s: %v", version, stream, err)
		}
		wantTyp, wantSchema, wantData, err := domain.MarshalEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		if typ != wantTyp || schema != wantSchema || !sameJSON(t, data, wantData) {
			t.Fatalf("event %d of %s stored as %s v%d %s; MarshalEvent writes %s v%d %s", version, stream, typ, schema, data, wantTyp, wantSchema, wantData)
		}
		var m eventstore.Metadata
		dec := json.NewDecoder(bytes.NewReader(meta))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil || m.Actor == "" || m.CorrelationID == "" {
			t.Fatalf("event %d of %s: metadata %s: %v", version, stream, meta, err)
		}
		run := folded[stream]
		if run.Version+1 != version {
			t.Fatalf("run %s: version %d after %d", stream, version, run.Version)
		}
		folded[stream] = domain.Evolve(run, ev)
		types[typ]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 2000 || len(folded) != 100 {
		t.Fatalf("log holds %d events of %d runs; want 2000 of 100", n, len(folded))
	}
	if types[domain.TypeRunStaleFailed] != 5 || types[domain.TypeCancelRequested] != 5 || types[domain.TypeRunCompleted] != 95 {
		t.Fatalf("endings %v; want 5 stale, 5 cancelled, 95 completed", types)
	}
	store := eventstore.New(pool)
	for id, want := range folded {
		got, err := store.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("run %s: snapshot\n%+v\nevents fold to\n%+v", id, got, want)
		}
	}
	var bad, open int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM run_snapshots s WHERE last_position <> (SELECT max(position) FROM events WHERE stream_id = s.run_id)`).Scan(&bad); err != nil || bad != 0 {
		t.Fatalf("%d snapshots with a wrong last position (%v)", bad, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM run_snapshots WHERE NOT ended`).Scan(&open); err != nil || open != 0 {
		t.Fatalf("%d seeded runs open (%v)", open, err)
	}
	// Many small transactions, in position order as appends commit them.
	var txs, inversions int
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT tx), count(*) FILTER (WHERE tx < prev)
		FROM (SELECT transaction_id AS tx, lag(transaction_id) OVER (ORDER BY position) AS prev FROM events) x`).Scan(&txs, &inversions); err != nil {
		t.Fatal(err)
	}
	if txs < 2000/50 || inversions != 0 {
		t.Fatalf("%d transactions, %d out of position order; want at least 40, none", txs, inversions)
	}
	// A second seed continues the log after the first.
	if _, err := longlog.Seed(ctx, pool, longlog.Options{Events: 200, EventsPerRun: 20, Businesses: 7, Label: "more"}); err != nil {
		t.Fatal(err)
	}
	var behind int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE business_id LIKE 'more-%' AND occurred_at <= (SELECT max(occurred_at) FROM events WHERE business_id LIKE 'seed-%')`).Scan(&behind); err != nil || behind != 0 {
		t.Fatalf("%d events of the second seed lie before the first's end (%v)", behind, err)
	}
	if _, err := longlog.Seed(ctx, pool, longlog.Options{Label: "Bad'label"}); err == nil {
		t.Fatal("a label that cannot be an id was accepted")
	}
}

// normalize drops what JSON does not carry (monotonic clock, locations).
func normalize(r domain.Run) domain.Run {
	b, _ := json.Marshal(r)
	var out domain.Run
	_ = json.Unmarshal(b, &out)
	return out
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}
