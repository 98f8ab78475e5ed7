package client_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	secret = "client-test-secret-client-test-secret"
	// The served policy: a short TTL so fencing and reaping happen in seconds.
	ttl      = 3 * time.Second
	interval = 100 * time.Millisecond // --heartbeat-min-interval, hence the SDK's heartbeat interval
	margin   = 300 * time.Millisecond // max(2 × interval, ttl/10)
	// slack absorbs a round trip and scheduling under the race detector on a
	// shared machine; every bound below is "one interval (or the margin) + slack".
	slack = 400 * time.Millisecond
)

// env is a real `runledger serve` on a fresh database, with tokens.
type env struct {
	t    *testing.T
	srv  *servetest.Server
	db   string // the served database's URL
	auth *api.Authenticator
	http *http.Client // the test's own reads, apart from the SDK's
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := pgtest.URL(t)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: db, Secret: secret, Args: []string{
		"--stale-after", ttl.String(), "--heartbeat-min-interval", interval.String(), "--reap-interval", "200ms"}})
	auth, err := api.NewAuthenticator(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	return &env{t: t, srv: srv, db: db, auth: auth, http: hc}
}

func (e *env) token(business string, role api.Role) string {
	e.t.Helper()
	tok, err := e.auth.Mint(business, role, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// client returns an SDK client of role on business, talking to baseURL
// (the server, or a proxy in front of it), with its own transport.
func (e *env) client(baseURL, business string, role api.Role, tweak ...func(*client.Options)) *client.Client {
	e.t.Helper()
	opts := client.Options{BaseURL: baseURL, Token: e.token(business, role), WorkerID: "test-worker",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RequestTimeout: 5 * time.Second,
		Logger: testLogger(e.t)}
	for _, f := range tweak {
		f(&opts)
	}
	c, err := client.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.CloseIdleConnections)
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// events returns the types and recorded times of a run's events, from the log.
func (e *env) events(business, runID string) []recorded {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/businesses/"+business+"/runs/"+runID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.token(business, api.RoleUser))
	res, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out struct {
		Events []recorded `json:"events"`
	}
	if res.StatusCode != 200 || json.Unmarshal(raw, &out) != nil {
		e.t.Fatalf("events: %d %s", res.StatusCode, raw)
	}
	return out.Events
}

type recorded struct {
	Type       string          `json:"type"`
	RecordedAt time.Time       `json:"recorded_at"`
	Data       json.RawMessage `json:"data"`
}

func count(events []recorded, typ string) int {
	n := 0
	for _, ev := range events {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func find(events []recorded, typ string) (recorded, bool) {
	for _, ev := range events {
		if ev.Type == typ {
			return ev, true
		}
	}
	return recorded{}, false
}

// waitFor polls cond every 20ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialer is a simulated worker: it places calls of callTime each, one after
// the other, and remembers when each call started and when its context was
// cancelled, and why.
type dialer struct {
	callTime time.Duration
	calls    int // 0: until cancelled

	mu         sync.Mutex
	starts     []time.Time
	cancelled  time.Time
	cause      error
	firstCall  chan struct{}
	firstOnce  sync.Once
	pausedSeen bool
}

func newDialer(callTime time.Duration, calls int) *dialer {
	return &dialer{callTime: callTime, calls: calls, firstCall: make(chan struct{})}
}

func (d *dialer) work(ctx context.Context, p *client.Progress) error {
	// The cancellation time is the earliest of when the AfterFunc ran and
	// when the loop saw it: the AfterFunc's goroutine may run after Run returned.
	noteCancel := func() {
		now := time.Now()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.cancelled.IsZero() || now.Before(d.cancelled) {
			d.cancelled, d.cause = now, context.Cause(ctx)
		}
	}
	stop := context.AfterFunc(ctx, noteCancel)
	defer stop()
	defer func() {
		if ctx.Err() != nil {
			noteCancel()
		}
	}()
	for i := 0; d.calls == 0 || i < d.calls; i++ {
		if p.Paused() {
			d.mu.Lock()
			d.pausedSeen = true
			d.mu.Unlock()
		}
		if err := p.WaitIfPaused(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		d.mu.Lock()
		d.starts = append(d.starts, time.Now())
		d.mu.Unlock()
		d.firstOnce.Do(func() { close(d.firstCall) })
		select {
		case <-time.After(d.callTime):
			p.Add(1, 0)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// callsAfter counts the calls started after t.
func (d *dialer) callsAfter(t time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.starts {
		if s.After(t) {
			n++
		}
	}
	return n
}

func (d *dialer) cancellation() (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancelled, d.cause
}

// runAsync runs c.Run in a goroutine; the result arrives on the channel.
type runResult struct {
	run client.Run
	err error
}

func runAsync(ctx context.Context, c *client.Client, business string, spec client.RunSpec, work client.WorkFunc) <-chan runResult {
	out := make(chan runResult, 1)
	go func() {
		run, err := c.Run(ctx, business, spec, work)
		out <- runResult{run, err}
	}()
	return out
}

func wait(t *testing.T, ch <-chan runResult, timeout time.Duration) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s", timeout)
		return runResult{}
	}
}

// noLeaks fails the test if a goroutine started since opts were taken is
// still running (idle keep-alive connections of the test's clients are
// closed first: they are the transport's, not Run's).
func (e *env) noLeaks(opts goleak.Option, clients ...*client.Client) {
	e.t.Helper()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	e.http.CloseIdleConnections()
	goleak.VerifyNone(e.t, opts)
}
