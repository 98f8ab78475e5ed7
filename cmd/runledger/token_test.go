package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/runledger/runledger/api"
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

// `runledger token` in a dev checkout signs with the dev data directory's
// secret when RUNLEDGER_AUTH_SECRET is unset, as `runledger dev` does.
func TestTokenFindsTheDevSecret(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "auth-secret"), []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(servetest.Binary(t), "token", "--business", "acme", "--role", "user", "--data-dir", dir)
	cmd.Env = devEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runledger token without RUNLEDGER_AUTH_SECRET: %v\n%s", err, out)
	}
	auth, _ := api.NewAuthenticator(testSecret, nil)
	claims, err := auth.Parse(strings.TrimSpace(string(out)))
	if err != nil || claims.BusinessID != "acme" || claims.Role != api.RoleUser {
		t.Fatalf("token %q: %+v, %v", out, claims, err)
	}
	// No secret anywhere: a clear error that says where to get one.
	cmd = exec.Command(servetest.Binary(t), "token", "--business", "acme", "--role", "user", "--data-dir", t.TempDir())
	cmd.Env = devEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "RUNLEDGER_AUTH_SECRET") {
		t.Fatalf("token with no secret: %v\n%s", err, out)
	}
}

// `runledger -h` names every flag of token and demo, and `token -h` lists
// only the flags that do something for it.
func TestHelpListsTheFlags(t *testing.T) {
	help := func(args ...string) string {
		out, _ := exec.Command(servetest.Binary(t), args...).CombinedOutput()
		return string(out)
	}
	flagsOf := func(cmdHelp string) []string {
		var names []string
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(cmdHelp, -1) {
			names = append(names, m[1])
		}
		return names
	}
	usage := help("-h")
	for _, cmd := range []string{"token", "demo"} {
		line := regexp.MustCompile(`(?m)^  runledger ` + cmd + ` .*(\n {4,}\[.*)*`).FindString(usage)
		names := flagsOf(help(cmd, "-h"))
		if len(names) == 0 {
			t.Fatalf("runledger %s -h lists no flags", cmd)
		}
		for _, name := range names {
			if !strings.Contains(line, "--"+name) {
				t.Errorf("runledger -h: the %s line %q does not name --%s", cmd, line, name)
			}
		}
	}
	got := strings.Join(flagsOf(help("token", "-h")), " ")
	if want := "business data-dir role subject ttl"; got != want {
		t.Errorf("runledger token -h lists %q, want %q", got, want)
	}
}
