package eventstore

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/pgtest"
)

var updateSnapshots = flag.Bool("update-snapshots", false, "rewrite testdata/snapshot_*.golden")

var snapAt = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// fullRun has every field of domain.Run set.
var fullRun = domain.Run{
	ID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), BusinessID: "acme", WorkerID: "dialer-3",
	Status: domain.StatusCancelled, CancelRequested: true, CancelReason: "stopped from the page",
	CancelRequestedBy: "user:alice", CancelDelivered: true, CancelForced: true,
	TotalCalls: 100, CompletedCalls: 40, FailedCalls: 2,
	StartedAt: snapAt, LastHeartbeatAt: snapAt.Add(10 * time.Minute), EndedAt: snapAt.Add(12*time.Minute + 500*time.Millisecond),
	EndReason: domain.EndCancelForced, LastError: "carrier down", AbandonedCalls: 58,
	StaleAfter: domain.Duration(2 * time.Minute), StallAfter: domain.Duration(90 * time.Second),
	Paused: true, PausedAt: snapAt.Add(5 * time.Minute), PauseReason: "lunch", PausedBy: "user:bob",
	LastProgressAt: snapAt.Add(9 * time.Minute), Version: 17,
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateSnapshots {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
		t.Fatalf("the stored snapshot format changed (stored rows would decode differently; migrate them, then -update-snapshots):\n got %s\nwant %s", got, want)
	}
}

// The bytes an append stores in run_snapshots.state are pinned: a started
// run, as the log stores it.
func TestStoredSnapshotBytesArePinned(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	store := New(pool)
	run := uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	start := domain.RunStarted{RunID: run, BusinessID: "acme", WorkerID: "dialer-3", TotalCalls: 100,
		StaleAfter: domain.Duration(2 * time.Minute), StallAfter: domain.Duration(90 * time.Second), OccurredAt: snapAt}
	if _, err := store.Append(ctx, run, 0, []NewEvent{{ID: uuid.New(), Event: start}}); err != nil {
		t.Fatal(err)
	}
	var state []byte
	if err := pool.QueryRow(ctx, `SELECT state FROM run_snapshots WHERE run_id = $1`, run).Scan(&state); err != nil {
		t.Fatal(err)
	}
	golden(t, "snapshot_started.golden", state)

	full, err := encodeRun(fullRun)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "snapshot_full.golden", full)
}

// Snapshots already stored decode to the state they were written from:
// one written by the code before the storage type (json.Marshal of
// domain.Run, at e93e957), and one from before runs recorded their policy,
// pause and progress (those fields zero).
func TestSnapshotsStoredEarlierDecode(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "snapshot_e93e957.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRun(raw)
	if err != nil || !reflect.DeepEqual(got, fullRun) {
		t.Fatalf("snapshot stored at e93e957 decodes to\n%+v (%v)\nwant\n%+v", got, err, fullRun)
	}
	if again, _ := encodeRun(got); !bytes.Equal(again, bytes.TrimSpace(raw)) {
		t.Fatalf("re-encoded differently:\n got %s\nwant %s", again, raw)
	}

	old := `{"run_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","business_id":"acme","worker_id":"w","status":"running",` +
		`"cancel_requested":false,"total_calls":10,"completed_calls":3,"failed_calls":1,"started_at":"2026-11-28T09:00:00Z",` +
		`"last_heartbeat_at":"2026-11-28T09:01:00Z","version":4}`
	want := domain.Run{ID: fullRun.ID, BusinessID: "acme", WorkerID: "w", Status: domain.StatusRunning, TotalCalls: 10,
		CompletedCalls: 3, FailedCalls: 1, StartedAt: snapAt, LastHeartbeatAt: snapAt.Add(time.Minute), Version: 4}
	if got, err := decodeRun([]byte(old)); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("an early snapshot decodes to\n%+v (%v)\nwant\n%+v", got, err, want)
	}
}

// Every field of domain.Run survives the storage type: a field added to
// the domain but not to storedRun would be lost on every append.
func TestEveryRunFieldIsStored(t *testing.T) {
	var r domain.Run
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case time.Time:
			f.Set(reflect.ValueOf(snapAt.Add(time.Duration(i) * time.Second)))
		case uuid.UUID:
			f.Set(reflect.ValueOf(uuid.New()))
		default:
			switch f.Kind() {
			case reflect.String:
				f.SetString("s" + v.Type().Field(i).Name)
			case reflect.Bool:
				f.SetBool(true)
			case reflect.Int, reflect.Int64:
				f.SetInt(int64(i + 1))
			default:
				t.Fatalf("domain.Run.%s: a %s, which this test cannot fill: teach it", v.Type().Field(i).Name, f.Type())
			}
		}
	}
	raw, err := encodeRun(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRun(raw)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("stored and loaded, the run is\n%+v (%v)\nwant\n%+v", got, err, r)
	}
}
