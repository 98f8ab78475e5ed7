package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// With its database gone, the API answers 503 unavailable with Retry-After,
// never 500: a client can tell "retry later" from a defect.
func TestDatabaseOutageAnswers503(t *testing.T) {
	pool := pgtest.Pool(t, pgtest.URL(t))
	pool.Close()
	auth, _ := api.NewAuthenticator(secret, func() time.Time { return t0 })
	runner := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	srv := api.New(api.Config{Runner: runner, Pool: pool, Auth: auth, Policy: domain.DefaultPolicy(),
		Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e := &env{t: t, auth: auth, server: srv, url: serveHTTP(t, srv)}
	worker, user := e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleWorker}), e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleUser})
	for _, c := range []struct {
		method, path, token string
		body                any
	}{
		{"GET", "/v1/businesses/acme/runs/active", user, nil},
		{"POST", "/v1/businesses/acme/runs", worker, map[string]any{"total_calls": 1, "worker_id": "w"}},
		{"POST", "/v1/businesses/acme/runs/01930000-0000-7000-8000-000000000000/heartbeat", worker, map[string]any{"completed_calls": 0, "failed_calls": 0}},
	} {
		r := e.must(e.do(c.method, c.path, c.token, c.body), 503, "unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Fatalf("%s %s: 503 without Retry-After", c.method, c.path)
		}
	}
}

// A read model that has fallen behind the log is not judged from: GET active
// and the stream answer 503 read_model_behind, not a frozen state or 404.
func TestReadModelBehindAnswers503(t *testing.T) {
	var lag *projections.LagMonitor
	e := newEnvWith(t, func(c *api.Config) {
		lag = projections.NewLagMonitor(c.Pool, 20*time.Millisecond)
		c.Lag, c.MaxReadLag = lag, 300*time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go lag.Run(ctx)
	id := e.start("acme", 10)
	user := e.token("acme", api.RoleUser)
	waitStatus(t, e, "/v1/businesses/acme/runs/active", user, 200)
	e.stopProjector()
	e.clock.Advance(time.Minute)
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/heartbeat", e.token("acme", api.RoleWorker),
		map[string]any{"completed_calls": 1, "failed_calls": 0}), 200, "")
	r := waitStatus(t, e, "/v1/businesses/acme/runs/active", user, 503)
	if r.str("code") != "read_model_behind" || r.header.Get("Retry-After") == "" {
		t.Fatalf("behind: %s (Retry-After %q)", r.raw, r.header.Get("Retry-After"))
	}
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream", user, nil), 503, "read_model_behind")
}

// waitStatus polls path until it answers status (bounded).
func waitStatus(t *testing.T, e *env, path, token string, status int) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("GET", path, token, nil)
		if r.status == status {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s kept answering %d %s, want %d", path, r.status, r.raw, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Streams are capped per token and per replica: beyond, 429 with Retry-After.
func TestStreamCapsAnswer429(t *testing.T) {
	e := newEnvWith(t, func(c *api.Config) { c.MaxStreams, c.MaxStreamsPerToken = 2, 1 })
	e.start("acme", 10)
	e.start("globex", 10)
	alice := e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleUser, Subject: "alice"})
	bob := e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleUser, Subject: "bob"})
	carol := e.tokenFor(api.TokenSpec{Business: "globex", Role: api.RoleUser, Subject: "carol"})
	first := e.openStreamAs("acme", alice)
	nextData(t, first)
	r := e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream", alice, nil), 429, "too_many_streams")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	nextData(t, e.openStreamAs("acme", bob))                                                             // another token: its own slot
	e.must(e.do("GET", "/v1/businesses/globex/runs/active/stream", carol, nil), 429, "too_many_streams") // the replica is full
}

func serveHTTP(t *testing.T, srv *api.Server) string {
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// The two read models are applied by separate consumer groups, so
// active_runs may be ahead of runs. A stream opened then starts from the
// active_runs row (not a 500), and follows the runs model as it catches up.
func TestStreamWhileRunsModelIsBehindActiveRuns(t *testing.T) {
	e := newEnv(t)
	e.stopProjector()
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	started := e.must(e.do("POST", "/v1/businesses/acme/runs", worker, map[string]any{"total_calls": 10, "worker_id": "w1"}), 201, "")
	id := started.str("run_id")
	runProjector := func(names ...string) {
		subscribed := make(chan struct{})
		proj, err := projections.NewProjector(e.pool, projections.Options{Projections: names, Feed: e.feed, OnSubscribed: func() { close(subscribed) },
			PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- proj.Run(ctx) }()
		<-subscribed
		t.Cleanup(func() { cancel(); <-done })
	}
	runProjector(projections.ActiveRuns) // runs stays behind: it has never seen the run
	waitStatus(t, e, "/v1/businesses/acme/runs/active", user, 200)

	events := e.openStreamAs("acme", user)
	if first := nextData(t, events); first.event != "run" || first.run["run_id"] != id {
		t.Fatalf("first event %+v, want the run from active_runs", first)
	}
	runProjector(projections.Runs)
	e.clock.Advance(6 * time.Second) // past the coalescing interval: the heartbeat is stored
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 4, "failed_calls": 1}), 200, "")
	for {
		ev := nextData(t, events)
		if ev.event != "run" {
			t.Fatalf("event %+v, want the heartbeat's run", ev)
		}
		if ev.run["completed_calls"] == float64(4) {
			break
		}
	}
}
