package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The thin store answers a heartbeat only once its row is committed, one row
// per acknowledged heartbeat with its own stream version, and refuses a
// request without a bearer token or with a body it cannot read, storing
// nothing for it.
func TestThinStoreStoresWhatItAcknowledges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := pgtest.URL(t)
	pool := pgtest.Pool(t, url)
	if _, err := pool.Exec(ctx, `CREATE TABLE `+thinTable+` (LIKE events INCLUDING ALL)`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	srv := httptest.NewServer(newThinStore(ctx, conn))
	defer srv.Close()
	base := srv.URL + "/v1/businesses/acme/runs"

	if status, err := call("POST", base, "", map[string]any{"total_calls": 10}, nil); err != nil || status != 401 {
		t.Fatalf("start without a token: status %d, %v; want 401", status, err)
	}
	var started struct {
		RunID string `json:"run_id"`
	}
	if status, err := call("POST", base, "tok", map[string]any{"total_calls": 10, "worker_id": "w"}, &started); err != nil || status != 201 {
		t.Fatalf("start: status %d, %v; want 201", status, err)
	}
	if status, err := call("POST", base+"/"+started.RunID+"/heartbeat", "tok", "not an object", nil); err != nil || status != 400 {
		t.Fatalf("heartbeat with a bad body: status %d, %v; want 400", status, err)
	}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out struct {
				Recorded bool `json:"recorded"`
			}
			status, err := call("POST", base+"/"+started.RunID+"/heartbeat", "tok", map[string]any{"completed_calls": i, "failed_calls": 0}, &out)
			if err == nil && (status != 200 || !out.Recorded) {
				err = fmt.Errorf("heartbeat %d: status %d, recorded %v", i, status, out.Recorded)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var rows, versions, heartbeats int64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT stream_version), count(*) FILTER (WHERE type = 'Heartbeat')
		FROM `+thinTable+` WHERE stream_id = $1 AND business_id = 'acme'`, started.RunID).Scan(&rows, &versions, &heartbeats); err != nil {
		t.Fatal(err)
	}
	if rows != n+1 || versions != n+1 || heartbeats != n {
		t.Fatalf("stored %d rows (%d versions, %d heartbeats); want %d (%d, %d)", rows, versions, heartbeats, n+1, n+1, n)
	}
}
