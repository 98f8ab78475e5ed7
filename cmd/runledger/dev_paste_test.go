package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/servetest"
)

// A newcomer's first minute: `make run` (runledger dev on a fresh data
// directory, its own cluster) prints curl lines; pasted as one block into a
// shell they leave a completed run and no open run, and pasting them again
// does the same with a new run (no 409 from the first paste's run, no 400
// for counts going backwards).
func TestDevCurlLinesPastedTwice(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	dir := devDataDir(t)
	addr := freeLoopback(t)
	cmd := exec.Command(servetest.Binary(t), "dev", "--data-dir", dir, "--addr", addr,
		"--heartbeat-min-interval", "1s")
	cmd.Env = devEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // dev stops its server and its cluster
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	banner := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Stop with Ctrl-C") {
				banner <- b.String()
			}
		}
	}()
	var out string
	select {
	case out = <-banner:
	case err := <-exited:
		t.Fatalf("dev exited before printing its banner: %v\n%s", err, stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("dev printed no banner within 3 minutes\n%s", stderr.String())
	}
	block := pasteBlock(t, out)

	for paste := 1; paste <= 2; paste++ {
		sh := exec.Command("sh", "-c", block)
		sh.Env = devEnv()
		got, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("paste %d: sh: %v\n%s", paste, err, got)
		}
		if m := regexp.MustCompile(`"status":[45]\d\d[^\n]*`).Find(got); m != nil {
			t.Fatalf("paste %d: a line was refused: %s\n--- output:\n%s", paste, m, got)
		}
	}

	user := regexp.MustCompile(`(?m)^export USER_TOKEN=(\S+)$`).FindStringSubmatch(out)
	if user == nil {
		t.Fatalf("no USER_TOKEN in the banner:\n%s", out)
	}
	get := func(path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+user[1])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	// The read models may be a moment behind the last complete.
	var code int
	var active map[string]any
	var statuses []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, active = get("/v1/businesses/" + devBusiness + "/runs/active")
		_, list := get("/v1/businesses/" + devBusiness + "/runs")
		runs, _ := list["runs"].([]any)
		statuses = statuses[:0]
		for _, r := range runs {
			run := r.(map[string]any)
			statuses = append(statuses, fmt.Sprintf("%v/%v %v+%v", run["status"], run["end_reason"], run["completed_calls"], run["failed_calls"]))
		}
		done := len(statuses) == 2 && statuses[0] == statuses[1] && strings.HasPrefix(statuses[0], "completed/completed ")
		if code == http.StatusNotFound && done || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusNotFound {
		t.Errorf("after two pastes GET active = %d %v, want 404 no_active_run", code, active)
	}
	if len(statuses) != 2 || statuses[0] != statuses[1] || !strings.HasPrefix(statuses[0], "completed/completed ") {
		t.Fatalf("after two pastes the runs are %v, want two completed runs", statuses)
	}
}

// pasteBlock is what a newcomer copies from the banner: from the first
// export to the last line before the health links.
func pasteBlock(t *testing.T, banner string) string {
	t.Helper()
	start := strings.Index(banner, "export RL=")
	end := strings.Index(banner, "\nHealth ")
	if start < 0 || end < start {
		t.Fatalf("no curl lines in the banner:\n%s", banner)
	}
	return banner[start:end]
}

// devDataDir is a fresh data directory that the postgres user (when the
// tests run as root) can reach.
func devDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "runledger-dev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "data")
}

// devEnv is the environment of a newcomer's shell: no secret, no database.
func devEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RUNLEDGER_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	return env
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
