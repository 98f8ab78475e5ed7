package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

// After `runledger erase --force` (the run ended by the CLI's own commands,
// then erased), a running serve that last saw the run running answers a
// command on it as it answers any run it does not have: nothing of the
// erased business comes back, neither in an answer nor in the log.
func TestServeAnswersNothingOfAnErasedBusiness(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: url, Secret: testSecret,
		Args: []string{"--heartbeat-min-interval", "0s"}})
	auth, err := api.NewAuthenticator(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.MintToken(api.TokenSpec{Business: "gone", Role: api.RoleWorker, Subject: "w", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	run := uuid.New()
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/businesses/gone/runs"+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("", fmt.Sprintf(`{"run_id":%q,"worker_id":"secret-worker","total_calls":100}`, run)); code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	if code, body := post("/"+run.String()+"/heartbeat", `{"completed_calls":40,"failed_calls":0}`); code != 200 {
		t.Fatalf("heartbeat: %d %s", code, body)
	}
	if out, err := exec.Command(servetest.Binary(t), "erase", "--database-url", url, "--business", "gone",
		"--reason", "test", "--force").CombinedOutput(); err != nil {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	for _, hb := range []string{`{"completed_calls":10,"failed_calls":0}`, `{"completed_calls":41,"failed_calls":0}`} {
		code, body := post("/"+run.String()+"/heartbeat", hb)
		if code != http.StatusNotFound || strings.Contains(body, "secret-worker") || strings.Contains(body, `"completed_calls"`) {
			t.Errorf("heartbeat %s on the erased run: %d %s; want 404 carrying nothing of it", hb, code, body)
		}
	}
	pool := pgtest.Pool(t, url)
	var n int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events WHERE business_id = 'gone') + (SELECT count(*) FROM run_snapshots WHERE business_id = 'gone')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows of the erased business after the commands (%v)", n, err)
	}
}
