package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const secret = "test-secret-test-secret-test-secret!"

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// env is a running service: real PostgreSQL, projector, HTTP server, fake clock, no reaper.
type env struct {
	t      testing.TB
	pool   *pgxpool.Pool
	clock  *fakeclock.Clock
	auth   *api.Authenticator
	server *api.Server
	runner *runs.Runner
	url    string
	// stopProjector stops the projections (tests of a read model that falls behind).
	stopProjector func()
	feed          *feed.Feed[projections.RunRow]
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with the server's configuration adjusted by configure.
func newEnvWith(t testing.TB, configure func(*api.Config)) *env {
	t.Helper()
	return newEnvOn(t, pgtest.NewDB(t), configure)
}

// newEnvOn is newEnvWith on a given database.
func newEnvOn(t testing.TB, pool *pgxpool.Pool, configure func(*api.Config)) *env {
	t.Helper()
	clock := fakeclock.New(t0)
	auth, err := api.NewAuthenticator(secret, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var proj *projections.Projector
	wired := os.Getenv(serveWiringEnv) != ""
	storeOpts := eventstore.Options{OnCommitted: func(last int64) { proj.Wake(last) }}
	if wired {
		storeOpts.NotifyChannel = feed.AppendsChannel
	}
	store := eventstore.NewWithOptions(pool, storeOpts)
	runner := runs.NewRunner(store, domain.DefaultPolicy())
	runner.Now = clock.Now
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	changes := feed.New[projections.RunRow](projections.ReadOffsets)
	cfg := api.Config{Runner: runner, Pool: pool, Auth: auth, Policy: domain.DefaultPolicy(), Now: clock.Now, NewTimer: clock.NewTimer,
		Logger: logger, StreamKeepAlive: 50 * time.Millisecond, Feed: changes}
	if configure != nil {
		configure(&cfg)
	}
	srv := api.New(cfg)
	runner.OnAppended = srv.Metrics().ObserveResult
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	projOpts := projections.Options{PollInterval: time.Second, Logger: logger, Feed: changes}
	if wired {
		// The projector runs as on another replica: its batches reach this
		// API only through NOTIFY and the Listener, as serve wires them.
		projOpts.Feed, projOpts.NotifyChannel, projOpts.Origin = nil, feed.ChangesChannel, "projector-replica"
	}
	subscribed := make(chan struct{})
	projOpts.OnSubscribed = func() { close(subscribed) }
	proj, err = projections.NewProjector(pool, projOpts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if wired {
		ln := &feed.Listener{Logger: logger, Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
		}}
		ln.Handle(feed.ChangesChannel, feed.ChangesTopic(changes, "api-replica", nil))
		ln.Handle(feed.AppendsChannel, feed.AppendsTopic(proj.Wake))
		listening := make(chan error, 1)
		go func() { listening <- ln.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-listening })
	}
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	<-subscribed
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &env{t: t, pool: pool, clock: clock, auth: auth, server: srv, runner: runner, url: hs.URL, stopProjector: stop, feed: changes}
}

func (e *env) token(business string, role api.Role) string {
	e.t.Helper()
	return e.tokenFor(api.TokenSpec{Business: business, Role: role})
}

// tokenFor mints a token valid for an hour of the env's clock.
func (e *env) tokenFor(spec api.TokenSpec) string {
	e.t.Helper()
	spec.TTL = time.Hour
	tok, err := e.auth.MintToken(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r response) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

func (r response) obj(key string) map[string]any {
	v, _ := r.body[key].(map[string]any)
	return v
}

// do sends a request; body may be nil, a string (sent as is) or a value (sent as JSON).
func (e *env) do(method, path, token string, body any) response {
	e.t.Helper()
	return e.doWith(method, path, token, body, nil)
}

// doWith is do with extra request headers.
func (e *env) doWith(method, path, token string, body any, header http.Header) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	var sent []byte
	if rd != nil {
		sent, _ = io.ReadAll(rd)
		rd = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	checkExchange(e.t, req, sent, res, raw)
	out := response{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// must asserts the status (and, for problems, the code).
func (e *env) must(r response, status int, code string) response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if code != "" {
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			e.t.Fatalf("problem content type %q", ct)
		}
		if r.str("code") != code {
			e.t.Fatalf("code %q, want %q: %s", r.str("code"), code, r.raw)
		}
	}
	return r
}

// caughtUp waits until the read models reflect every committed event.
func (e *env) caughtUp() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lags, err := projections.Lags(context.Background(), e.pool, nil)
		if err != nil {
			e.t.Fatal(err)
		}
		if lags[0].Events == 0 && lags[1].Events == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("projections behind: %+v", lags)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// eventCount is the number of events in the log.
func (e *env) eventCount() int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// readModels dumps both read models for before/after comparisons.
func (e *env) readModels() string {
	e.t.Helper()
	var b strings.Builder
	for _, table := range []string{"runs", "active_runs"} {
		rows, err := e.pool.Query(context.Background(), `SELECT t::text FROM `+table+` t ORDER BY run_id`)
		if err != nil {
			e.t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				e.t.Fatal(err)
			}
			b.WriteString(s + "\n")
		}
		rows.Close()
	}
	return b.String()
}

// state is the log's size and both read models, for before/after comparisons.
type state struct {
	events int
	models string
}

func (e *env) state() state {
	e.t.Helper()
	e.caughtUp()
	return state{events: e.eventCount(), models: e.readModels()}
}

// unchanged fails the test if the log or the read models moved since before.
func (e *env) unchanged(before state, why string) {
	e.t.Helper()
	if e.state() != before {
		e.t.Fatal(why)
	}
}

func (e *env) start(business string, total int) string {
	e.t.Helper()
	r := e.must(e.do("POST", "/v1/businesses/"+business+"/runs", e.token(business, api.RoleWorker),
		map[string]any{"total_calls": total, "worker_id": "w1"}), 201, "")
	e.caughtUp()
	return r.str("run_id")
}

func strconvItoa(n int64) string { return strconv.FormatInt(n, 10) }
