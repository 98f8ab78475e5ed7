package clients_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	secret = "clients-test-secret-clients-test-secret"
	// The served policy: a short TTL so fencing and reaping happen in seconds.
	ttl      = 3 * time.Second
	interval = 100 * time.Millisecond
)

// served is a real `runledger serve` on a fresh database, a fault proxy in
// front of it, and a control server through which a test in another
// language mints tokens, holds a consumer group back and drives the proxy.
type served struct {
	srv     *servetest.Server
	proxy   *faultProxy
	groups  *groups
	auth    *api.Authenticator
	control string
}

func serve(t *testing.T) *served {
	t.Helper()
	db := pgtest.URL(t)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: db, Secret: secret, Args: []string{
		"--stale-after", ttl.String(), "--heartbeat-min-interval", interval.String(), "--reap-interval", "200ms"}})
	auth, err := api.NewAuthenticator(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &groups{db: db}
	t.Cleanup(g.releaseAll)
	s := &served{srv: srv, proxy: newFaultProxy(t, srv.URL), groups: g, auth: auth}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		tok, err := auth.Mint(r.URL.Query().Get("business"), api.Role(r.URL.Query().Get("role")), time.Hour)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(tok))
	})
	mux.HandleFunc("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		if err := g.hold(r.Context(), r.URL.Query().Get("group")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /release", func(w http.ResponseWriter, r *http.Request) { g.releaseAll() })
	mux.HandleFunc("POST /release-on-read", func(w http.ResponseWriter, r *http.Request) {
		s.releaseOnRead(r.URL.Query().Get("business"))
	})
	mux.HandleFunc("POST /proxy/hold-heartbeats", func(w http.ResponseWriter, r *http.Request) {
		s.proxy.holdHeartbeats(r.URL.Query().Get("business"))
	})
	mux.HandleFunc("POST /proxy/release-heartbeats", func(w http.ResponseWriter, r *http.Request) {
		s.proxy.releaseHeartbeats(r.URL.Query().Get("business"))
	})
	mux.HandleFunc("POST /proxy/cut-next-complete", func(w http.ResponseWriter, r *http.Request) {
		s.proxy.cutNextComplete(r.URL.Query().Get("business"))
	})
	mux.HandleFunc("GET /proxy/requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.proxy.requests(r.URL.Query().Get("business")))
	})
	ctl := httptest.NewServer(mux)
	t.Cleanup(ctl.Close)
	s.control = ctl.URL
	return s
}

// releaseOnRead releases the held groups a moment after the business's next
// GET reached the proxy: a read that waits for its position then sees the
// projection catch up, one that does not has been answered already.
func (s *served) releaseOnRead(business string) {
	arrived := s.proxy.nextRead(business)
	go func() {
		select {
		case <-arrived:
			time.Sleep(300 * time.Millisecond)
		case <-time.After(30 * time.Second):
		}
		s.groups.releaseAll()
	}()
}

// groups holds consumer groups back: each hold locks the group's row in
// projection_offsets, which the group's subscriber locks (FOR UPDATE) to
// read its next batch, so nothing more is projected by it until released.
type groups struct {
	db    string
	mu    sync.Mutex
	held  []pgx.Tx
	conns []*pgx.Conn
}

func (g *groups) hold(ctx context.Context, group string) error {
	conn, err := pgx.Connect(ctx, g.db)
	if err != nil {
		return err
	}
	tx, err := conn.Begin(context.Background())
	if err == nil {
		_, err = tx.Exec(ctx, `SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE`, group)
	}
	if err != nil {
		_ = conn.Close(context.Background())
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held, g.conns = append(g.held, tx), append(g.conns, conn)
	return nil
}

func (g *groups) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, tx := range g.held {
		_ = tx.Rollback(context.Background())
		_ = g.conns[i].Close(context.Background())
	}
	g.held, g.conns = nil, nil
}

// The Python package's tests (clients/python/tests) against a real server:
// python3 -m unittest, with the server's URL, the proxy's, the control
// server's and the server's pid in the environment.
func TestPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("RUNLEDGER_REQUIRE_PYTHON") != "" {
			t.Fatal("python3 not found and RUNLEDGER_REQUIRE_PYTHON is set")
		}
		t.Skip("python3 not found: the Python client's tests did not run")
	}
	s := serve(t)
	dir, err := filepath.Abs("python")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-m", "unittest", "discover", "-s", "tests", "-t", "."}
	if only := os.Getenv("RUNLEDGER_PYTHON_TESTS"); only != "" { // e.g. tests.test_worker.WorkerTest.test_x
		args = append([]string{"-m", "unittest"}, strings.Fields(only)...)
	}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PYTHONPATH="+dir,
		"PYTHONDONTWRITEBYTECODE=1",
		"RUNLEDGER_TEST_URL="+s.srv.URL,
		"RUNLEDGER_TEST_PROXY_URL="+s.proxy.URL,
		"RUNLEDGER_TEST_CONTROL_URL="+s.control,
		"RUNLEDGER_TEST_SERVER_PID="+strconv.Itoa(s.srv.Pid()),
		"RUNLEDGER_TEST_TTL="+strconv.FormatFloat(ttl.Seconds(), 'f', -1, 64),
		"RUNLEDGER_TEST_INTERVAL="+strconv.FormatFloat(interval.Seconds(), 'f', -1, 64),
	)
	out, err := cmd.CombinedOutput()
	// A test that froze the server and failed must not leave it frozen.
	s.srv.Thaw()
	if err != nil || testing.Verbose() {
		t.Logf("python3 %v:\n%s", args, out)
	}
	if err != nil {
		t.Fatalf("the Python tests failed: %v", err)
	}
}
