package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testSecret = "cmd-test-secret-cmd-test-secret-0123"

// testConfig is serve's configuration with every default, on a fresh
// database and a free port.
func testConfig(t *testing.T) Config {
	t.Helper()
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.bindServe(fs)
	if err := parse(fs, []string{"--addr", "127.0.0.1:0", "--reap-interval", "1s"}); err != nil {
		t.Fatal(err)
	}
	cfg.DatabaseURL, cfg.AuthSecret = pgtest.URL(t), testSecret
	return cfg
}

// serve end to end: migrate, serve, answer, and shut down on cancel with an
// open SSE stream, in bounded time.
func TestServeRunsAndShutsDownGracefully(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, testConfig(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	auth, _ := api.NewAuthenticator(testSecret, nil)
	worker, _ := auth.Mint("demo", api.RoleWorker, time.Hour)
	user, _ := auth.Mint("demo", api.RoleUser, time.Hour)
	req, _ := http.NewRequest("POST", svc.URL()+"/v1/businesses/demo/runs", strings.NewReader(`{"total_calls":5,"worker_id":"w"}`))
	req.Header.Set("Authorization", "Bearer "+worker)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 201 {
		t.Fatalf("start: %v %v", res, err)
	}
	res.Body.Close()

	var stream *http.Response
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		req, _ = http.NewRequest("GET", svc.URL()+"/v1/businesses/demo/runs/active/stream", nil)
		req.Header.Set("Authorization", "Bearer "+user)
		if stream, err = http.DefaultClient.Do(req); err == nil && stream.StatusCode == 200 {
			break
		}
	}
	if stream == nil || stream.StatusCode != 200 {
		t.Fatal("no stream")
	}
	defer stream.Body.Close()

	res, err = http.Get(svc.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready api.Readiness
	_ = json.NewDecoder(res.Body).Decode(&ready)
	res.Body.Close()
	if ready.Status != "ready" {
		t.Fatalf("readyz = %+v", ready)
	}

	start := time.Now()
	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown hung on the open stream")
	}
	if _, err := io.ReadAll(stream.Body); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("stream closed with %v", err)
	}
	t.Logf("shutdown took %s", time.Since(start))
	if _, err := http.Get(svc.URL() + "/healthz"); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestConfigRefusesCoalescingBeyondTenthOfTTL(t *testing.T) {
	cfg := testConfig(t)
	cfg.DatabaseURL = ""
	cfg.StaleAfter, cfg.HeartbeatMinInterval = time.Minute, 10*time.Second
	if _, err := cfg.Policy(); err == nil || !strings.Contains(err.Error(), "heartbeat_min_interval") {
		t.Fatalf("Policy() = %v", err)
	}
	cfg.AuthSecret = "short"
	cfg.HeartbeatMinInterval = time.Second
	if _, err := newService(context.Background(), cfg, slog.Default()); err == nil || !strings.Contains(err.Error(), "RUNLEDGER_AUTH_SECRET") {
		t.Fatalf("short secret accepted: %v", err)
	}
}

// A malformed environment value is a startup error naming the variable,
// reported like a bad flag (not an exit from inside flag binding).
func TestMalformedEnvironmentIsAConfigurationError(t *testing.T) {
	t.Setenv("RUNLEDGER_STALE_AFTER", "fifteen minutes")
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.bindServe(fs)
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Policy(); err == nil || !strings.Contains(err.Error(), "RUNLEDGER_STALE_AFTER") {
		t.Fatalf("Policy() = %v, want an error naming RUNLEDGER_STALE_AFTER", err)
	}
}

// The database commands that read the policy's environment (compact, erase,
// audit) refuse a malformed value naming the variable, before they touch the
// database, instead of quietly judging old runs by the default TTL.
func TestOpsCommandsRefuseAMalformedEnvironment(t *testing.T) {
	t.Setenv("RUNLEDGER_STALE_AFTER", "fifteen minutes")
	url := pgtest.URL(t)
	for name, run := range map[string]func() error{
		"compact": func() error {
			return runCompact(context.Background(), []string{"--database-url", url, "--ended-before", "720h"})
		},
		"erase": func() error {
			return runErase(context.Background(), []string{"--database-url", url, "--business", "acme", "--reason", "test"})
		},
		"audit": func() error {
			return runAudit(context.Background(), []string{"--database-url", url, "--business", "acme"})
		},
	} {
		if err := run(); err == nil || !strings.Contains(err.Error(), "RUNLEDGER_STALE_AFTER") {
			t.Errorf("%s with RUNLEDGER_STALE_AFTER=\"fifteen minutes\": %v, want an error naming it", name, err)
		}
	}
}

// An unknown log level stops serve and dev with an error naming it; it is
// not quietly taken as info.
func TestUnknownLogLevelIsAConfigurationError(t *testing.T) {
	t.Setenv("RUNLEDGER_LOG_LEVEL", "verbose")
	err := runServe(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), `"verbose"`) || !strings.Contains(err.Error(), "RUNLEDGER_LOG_LEVEL") {
		t.Fatalf("serve with RUNLEDGER_LOG_LEVEL=verbose: %v", err)
	}
	for _, level := range []string{"debug", "INFO", "warn", "error"} {
		if _, err := newLogger(level); err != nil {
			t.Errorf("newLogger(%q): %v", level, err)
		}
	}
}
