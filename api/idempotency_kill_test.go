package api_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
)

// killDBEnv names the database the killed child serves (set only in the child).
const killDBEnv = "RUNLEDGER_TEST_KILL_DB"

// TestKilledServerHelper is the child of TestKeyedCommandSurvivesKill: a
// server on the parent's database whose keyed commands stop after their
// append, before their answer is stored, and say so on stdout. It does
// nothing in a normal run.
func TestKilledServerHelper(t *testing.T) {
	dbURL := os.Getenv(killDBEnv)
	if dbURL == "" {
		t.Skip("the child process of TestKeyedCommandSurvivesKill")
	}
	e := newEnvOn(t, pgtest.Pool(t, dbURL), nil)
	api.HoldAnswers(e.server, func(context.Context) {
		fmt.Println("ANSWER-HELD")
		select {} // until SIGKILL
	})
	fmt.Println("URL " + e.url)
	select {}
}

// A server killed (SIGKILL) between a keyed command's append and the storing
// of its answer: the retry on another server answers what the first would
// have (the completed run at the completion's position), and the log holds
// exactly one completion.
func TestKeyedCommandSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dbURL := pgtest.URL(t)
	e := newEnvOn(t, pgtest.Pool(t, dbURL), nil)
	b := "/v1/businesses/k"
	worker := e.token("k", api.RoleWorker)
	id := e.must(e.do("POST", b+"/runs", worker, map[string]any{"total_calls": 3, "worker_id": "w"}), 201, "").str("run_id")

	child := exec.Command(os.Args[0], "-test.run=^TestKilledServerHelper$", "-test.count=1")
	child.Env = append(os.Environ(), killDBEnv+"="+dbURL, "TEST_DATABASE_URL="+dbURL)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	lines := bufio.NewScanner(out)
	next := func(prefix string) string {
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), prefix) {
				return strings.TrimPrefix(lines.Text(), prefix)
			}
		}
		t.Fatalf("the child ended before printing %q: %v", prefix, lines.Err())
		return ""
	}
	childURL := next("URL ")

	path := b + "/runs/" + id + "/complete"
	body := `{"outcome":"completed","completed_calls":3,"failed_calls":0}`
	go func() {
		req, _ := http.NewRequest("POST", childURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+worker)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "complete-1")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	next("ANSWER-HELD")
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if n := e.countEvents("RunCompleted"); n != 1 {
		t.Fatalf("the killed server appended %d completions before its answer", n)
	}
	var completedAt int64
	if err := e.pool.QueryRow(context.Background(), `SELECT position FROM events WHERE type = 'RunCompleted'`).Scan(&completedAt); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(time.Minute) // past any claim the dead server held
	retry := e.doWith("POST", path, worker, body, keyed("complete-1"))
	if retry.status != http.StatusOK || retry.str("status") != "completed" {
		t.Fatalf("the retry after the kill answered %d: %s", retry.status, retry.raw)
	}
	if got := retry.header.Get("Runledger-Position"); got != fmt.Sprint(completedAt) {
		t.Fatalf("the retry answered position %s, the completion is at %d", got, completedAt)
	}
	if n := e.countEvents("RunCompleted"); n != 1 {
		t.Fatalf("after the retry the log holds %d completions", n)
	}
	again := e.must(e.doWith("POST", path, worker, body, keyed("complete-1")), 200, "")
	if string(again.raw) != string(retry.raw) {
		t.Fatalf("the next retry answered\n%s\nnot\n%s", again.raw, retry.raw)
	}
}
