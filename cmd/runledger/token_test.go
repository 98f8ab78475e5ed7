package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

// A token minted with --subject names its holder in the events they cause:
// the audit says user:alice, not a bare user.
func TestTokenSubjectIsTheActor(t *testing.T) {
	srv := servetest.Start(t, servetest.Options{DatabaseURL: pgtest.URL(t), Secret: testSecret})
	mint := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(servetest.Binary(t), append([]string{"token"}, args...)...)
		cmd.Env = []string{"RUNLEDGER_AUTH_SECRET=" + testSecret}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("runledger token %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	worker := mint("--business", "acme", "--role", "worker", "--subject", "dialer-7")
	alice := mint("--business", "acme", "--role", "user", "--subject", "alice")
	call := func(method, path, token, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		if res.StatusCode >= 300 {
			t.Fatalf("%s %s = %d %v", method, path, res.StatusCode, out)
		}
		return out
	}
	run := call("POST", "/v1/businesses/acme/runs", worker, `{"total_calls":3,"worker_id":"w"}`)["run_id"].(string)
	call("POST", "/v1/businesses/acme/runs/"+run+"/cancel", alice, `{"reason":"stop"}`)
	events := call("GET", "/v1/businesses/acme/runs/"+run+"/events", alice, "")["events"].([]any)
	actors := []string{}
	for _, e := range events {
		actors = append(actors, e.(map[string]any)["metadata"].(map[string]any)["actor"].(string))
	}
	if strings.Join(actors, " ") != "worker:dialer-7 user:alice" {
		t.Fatalf("actors = %v, want worker:dialer-7 user:alice", actors)
	}
	cancel := events[1].(map[string]any)["data"].(map[string]any)
	if cancel["requested_by"] != "user:alice" {
		t.Fatalf("cancel requested_by = %v", cancel["requested_by"])
	}
	if out, err := exec.Command(servetest.Binary(t), "token", "--business", "acme", "--role", "user", "--subject", "a b").CombinedOutput(); err == nil {
		t.Fatalf("a subject with a space was minted: %s", out)
	}
}
