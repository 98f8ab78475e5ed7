package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
)

// The demo against a real server (in process), sped up: no unexpected
// error, every case happens, and every run it leaves is in the state its
// fate says: ended as the demo saw it, or (crashed) still open or reaped.
func TestDemoAgainstRealServer(t *testing.T) {
	cfg := testConfig(t)
	cfg.StaleAfter, cfg.HeartbeatMinInterval, cfg.ReapInterval = 2*time.Second, 100*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- svc.Run(ctx) }()
	defer func() { cancel(); <-served }()

	var out bytes.Buffer
	rep, err := playDemo(context.Background(), demoConfig{URL: svc.URL(), Duration: 5 * time.Second, Workers: 6, Businesses: 3,
		Secret: testSecret, CallMin: 10 * time.Millisecond, CallMax: 60 * time.Millisecond, CallsMin: 8, CallsMax: 25,
		PauseHold: 300 * time.Millisecond, Tick: 200 * time.Millisecond, Seed: 1, Out: &out})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.unexpected != 0 {
		t.Fatalf("%d unexpected errors", rep.unexpected)
	}
	for _, outcome := range []string{outCompleted, outCrashed, outCancelled, outFailed} {
		if rep.count(outcome) == 0 {
			t.Errorf("no run ended %s", outcome)
		}
	}
	if strings.Contains(out.String(), "does not offer pause/resume") || rep.pauses == 0 {
		t.Errorf("no run was paused and resumed (%d pauses)", rep.pauses)
	}

	auth, _ := api.NewAuthenticator(testSecret, nil)
	for _, rec := range rep.records {
		tok, _ := auth.Mint(rec.business, api.RoleUser, time.Hour)
		c, _ := client.New(client.Options{BaseURL: svc.URL(), Token: tok})
		var run client.Run
		deadline := time.Now().Add(5 * time.Second)
		for { // the read model may be a moment behind the last complete
			run, err = c.GetRun(context.Background(), rec.business, rec.runID)
			if err == nil && (run.Ended() || rec.outcome == outCrashed) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.CloseIdleConnections()
		if err != nil {
			t.Fatalf("run %s (%s): %v", rec.runID, rec.outcome, err)
		}
		want := map[string]string{outCompleted: "completed/completed", outFailed: "failed/worker_failed",
			outCancelled: "cancelled/cancelled", outInterrupted: "failed/worker_failed"}[rec.outcome]
		got := run.Status + "/" + run.EndReason
		switch {
		case rec.outcome == outCrashed:
			if got != "running/" && got != "failed/stale" {
				t.Errorf("crashed run %s is %s: want open (silent) or reaped", rec.runID, got)
			}
		case got != want:
			t.Errorf("run %s (%s, %s) is %s, want %s", rec.runID, rec.fate, rec.outcome, got, want)
		}
	}
	for _, run := range rep.open {
		if rec := findRecord(rep.records, run.RunID); rec.outcome != outCrashed {
			t.Errorf("run %s left active, fate %s outcome %s", run.RunID, rec.fate, rec.outcome)
		}
	}
}

func findRecord(records []runRecord, id string) runRecord {
	for _, r := range records {
		if r.runID == id {
			return r
		}
	}
	return runRecord{}
}

// The demo names runs by the audit's rule: two runs whose ids end alike
// still read differently.
func TestDemoShortIDsAreUnique(t *testing.T) {
	a := uuid.MustParse("01a224d3-7c62-74e7-9e19-a16bb6480549")
	b := uuid.MustParse("01a224d3-7c62-74e7-9e19-b16bb6480549")
	d := &demo{runIDs: []uuid.UUID{a, b}}
	if sa, sb := d.short(a.String()), d.short(b.String()); sa == sb || !strings.HasSuffix(a.String(), strings.TrimPrefix(sa, "…")) {
		t.Fatalf("short forms %q and %q", sa, sb)
	}
}
