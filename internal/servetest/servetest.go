// Package servetest runs the real `runledger serve` binary as a subprocess
// for end-to-end tests: the SDK, the page in a browser, and faults that need a
// process to kill (SIGKILL), freeze (SIGSTOP) or restart. The binary is built
// once per test process from ./cmd/runledger.
package servetest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a runledger binary built (once per test
// process) from this module's cmd/runledger. Binaries left behind by test
// processes that have exited are removed.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		removeStale()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("runledger-servetest-%d", os.Getpid()))
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		binPath = filepath.Join(dir, "runledger")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/runledger/runledger/cmd/runledger").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/runledger: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("servetest: %v", buildErr)
	}
	return binPath
}

// removeStale deletes the binaries of test processes that no longer run.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "runledger-servetest-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "runledger-servetest-"))
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
}

// Options configure a served process.
type Options struct {
	// DatabaseURL is the database to serve (e.g. pgtest.URL(t)).
	DatabaseURL string
	// Secret is RUNLEDGER_AUTH_SECRET (at least 32 bytes).
	Secret string
	// Args are extra `serve` flags, e.g. "--stale-after", "3s".
	Args []string
	// Env are extra environment variables (KEY=VALUE).
	Env []string
	// Addr is the listen address; default a free loopback port.
	Addr string
}

// Server is a running `runledger serve` process.
type Server struct {
	// URL is the base URL it answers on, e.g. http://127.0.0.1:41234.
	URL  string
	Addr string

	t    testing.TB
	opts Options
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *lockedBuffer
}

// Start starts `runledger serve` and waits until it answers /healthz. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = freeAddr(t)
	}
	s := &Server{t: t, opts: opts, Addr: opts.Addr, URL: "http://" + opts.Addr, logs: &lockedBuffer{}}
	s.start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("servetest: logs of %s:\n%s", s.URL, s.Logs())
		}
	})
	return s
}

func (s *Server) start() {
	s.t.Helper()
	args := append([]string{"serve", "--addr", s.opts.Addr}, s.opts.Args...)
	cmd := exec.Command(Binary(s.t), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.opts.DatabaseURL, "RUNLEDGER_AUTH_SECRET="+s.opts.Secret)
	cmd.Env = append(cmd.Env, s.opts.Env...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	// The server must not outlive a test binary that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("servetest: start: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(s.URL + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			s.t.Fatalf("servetest: serve exited during start:\n%s", s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("servetest: serve did not answer /healthz within 60s:\n%s", s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart starts the process again with the same options and address.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Stop ends the process gracefully (SIGTERM), killing it after 15 s.
func (s *Server) Stop() {
	s.signalAndWait(syscall.SIGTERM, 15*time.Second)
}

// Kill ends the process at once (SIGKILL) and waits for it.
func (s *Server) Kill() {
	s.signalAndWait(syscall.SIGKILL, 15*time.Second)
}

// Freeze stops the process (SIGSTOP), as a VM pause would; Thaw resumes it.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

// Pid is the process id of the running server.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Logs returns what the process wrote to stdout and stderr so far.
func (s *Server) Logs() string { return s.logs.String() }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

func (s *Server) signalAndWait(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process cannot handle SIGTERM
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
