package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/runledger/runledger/internal/pgtest"
)

// --metrics-addr serves /metrics on a listener of its own, and the API's
// address no longer does; the pools are reported by role.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.bindServe(fs)
	if err := parse(fs, []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	cfg.DatabaseURL, cfg.AuthSecret = pgtest.URL(t), testSecret
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	get := func(url string) (int, string) {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	if status, _ := get(svc.URL() + "/metrics"); status != http.StatusNotFound {
		t.Fatalf("the API's address answered /metrics with %d", status)
	}
	status, body := get("http://" + svc.metricsListener.Addr().String() + "/metrics")
	if status != http.StatusOK {
		t.Fatalf("the metrics address answered %d", status)
	}
	for _, role := range []string{"commands", "reads", "projector", "reaper"} {
		if !strings.Contains(body, `runledger_db_pool_connections{pool="`+role+`",state="max"}`) {
			t.Errorf("no pool metrics for the %s pool", role)
		}
	}
	if status, _ := get(svc.URL() + "/healthz"); status != http.StatusOK {
		t.Fatalf("healthz: %d", status)
	}
}
