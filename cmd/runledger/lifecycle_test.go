package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

// process is a `runledger serve` subprocess whose exit status the test reads
// (servetest stops its servers itself and does not report how they ended).
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncLog
	url  string
	err  error // cmd.Wait's, once done is closed
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess starts serve on a free port with args and env, killed when
// the test ends.
func startProcess(t *testing.T, dbURL string, env []string, args ...string) *process {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(servetest.Binary(t), append([]string{"serve", "--addr", addr}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"DATABASE_URL=" + dbURL, "RUNLEDGER_AUTH_SECRET=" + testSecret}, env...)...)
	p := &process{cmd: cmd, done: make(chan struct{}), logs: &syncLog{}, url: "http://" + addr}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("serve's output:\n%s", p.logs.String())
		}
	})
	return p
}

// waitReady waits until the process answers /healthz, failing t if it exits first.
func (p *process) waitReady(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get(p.url + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("serve exited during start: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not answer /healthz within 60s")
		}
	}
}

// exitWithin waits up to d for the process to exit and returns its exit code.
func (p *process) exitWithin(t *testing.T, d time.Duration, what string) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("serve still running %s after %s", d, what)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A service that stops while serve runs (here the debug server, whose
// address is taken) ends the process with a non-zero status and a message
// naming it; serve does not keep running without it, nor exit 0.
func TestServeExitsNonZeroNamingAComponentThatStops(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p := startProcess(t, pgtest.URL(t), nil, "--debug-addr", taken.Addr().String())
	code := p.exitWithin(t, 60*time.Second, "its debug server failed")
	out := p.logs.String()
	if code == 0 || !strings.Contains(out, "runledger: debug server") {
		t.Fatalf("serve exited %d; want non-zero and a last line naming the debug server:\n%s", code, out)
	}
}

// A service that will not stop cannot hold the process past
// --shutdown-timeout (env RUNLEDGER_SHUTDOWN_TIMEOUT): with every one of
// its database sessions frozen (SIGSTOP, as a paused database host), serve
// given SIGTERM exits non-zero by the deadline, naming what did not stop.
func TestHungComponentCannotHoldShutdownPastItsTimeout(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	admin := pgtest.Pool(t, dbURL)
	p := startProcess(t, dbURL, []string{"RUNLEDGER_SHUTDOWN_TIMEOUT=2s"}, "--reap-interval", "50ms")
	p.waitReady(t)
	ctx := context.Background()
	rows, err := admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1`,
		fmt.Sprintf("%%:%d", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if rows.Err() != nil || len(pids) == 0 {
		t.Fatalf("serve's sessions: %v, %v", pids, rows.Err())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("freeze backend %d: %v", pid, err)
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	time.Sleep(500 * time.Millisecond) // the services meet the frozen sessions
	began := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := p.exitWithin(t, 20*time.Second, "SIGTERM with a 2s shutdown timeout")
	took := time.Since(began)
	out := p.logs.String()
	t.Logf("exited %d after %s: %s", code, took.Round(time.Millisecond), lastLine(out))
	// 8 s of margin for a loaded machine; without a deadline it took 15 s.
	if took > 10*time.Second || code == 0 || !strings.Contains(lastLine(out), "runledger: shutdown after 2s: ") {
		t.Fatalf("serve exited %d after %s; want non-zero by the 2s deadline and a last line naming what did not stop", code, took)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
