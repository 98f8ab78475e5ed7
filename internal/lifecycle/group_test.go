package lifecycle_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/lifecycle"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func untilDone(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// The shape every background part shares: one that returns while the
// process runs is reported by name (with its error, or as unexpected when it
// has none), and Stop names those still running at its deadline.
func TestGroupReportsEarlyStopsAndHungOnes(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	g := lifecycle.Start(context.Background(), quiet,
		lifecycle.Named{Name: "steady", Service: lifecycle.Func(untilDone)},
		lifecycle.Named{Name: "quitter", Service: lifecycle.Func(func(context.Context) error { return nil })},
		lifecycle.Named{Name: "stuck", Service: lifecycle.Func(func(context.Context) error { <-release; return nil })},
	)
	select {
	case err := <-g.Failed():
		if err.Error() != "quitter stopped unexpectedly" {
			t.Fatalf("Failed = %v, want quitter named", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a service that returned at once was not reported")
	}
	deadline, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := g.Stop(deadline); err == nil || err.Error() != "stuck did not stop in time" {
		t.Fatalf("Stop = %v, want stuck named", err)
	}

	failing := lifecycle.Start(context.Background(), quiet,
		lifecycle.Named{Name: "feed", Service: lifecycle.Func(func(context.Context) error { return errors.New("boom") })})
	if err := <-failing.Failed(); err.Error() != "feed: boom" {
		t.Fatalf("Failed = %v, want feed: boom", err)
	}
	if err := failing.Stop(context.Background()); err != nil {
		t.Fatalf("Stop after every service returned = %v", err)
	}
}

// A service that stops as it should (on ctx's end, nil or ctx.Err()) is no
// failure, and Stop returns as soon as every service has returned.
func TestGroupStopsCleanly(t *testing.T) {
	t.Parallel()
	g := lifecycle.Start(context.Background(), quiet,
		lifecycle.Named{Name: "nil on end", Service: lifecycle.Func(func(ctx context.Context) error { <-ctx.Done(); return nil })},
		lifecycle.Named{Name: "ctx.Err on end", Service: lifecycle.Func(untilDone)},
	)
	if err := g.Stop(context.Background()); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	select {
	case err := <-g.Failed():
		t.Fatalf("a service that stopped when told was reported: %v", err)
	default:
	}
}

// A service that panics is an early exit like any other: reported by name
// with the panic's value, so the process shuts the others down gracefully
// and exits non-zero instead of dying mid-request with in-flight work lost.
func TestGroupReportsAPanickingServiceByName(t *testing.T) {
	t.Parallel()
	g := lifecycle.Start(context.Background(), quiet,
		lifecycle.Named{Name: "steady", Service: lifecycle.Func(untilDone)},
		lifecycle.Named{Name: "reaper", Service: lifecycle.Func(func(context.Context) error { panic("nil map") })},
	)
	select {
	case err := <-g.Failed():
		if !strings.HasPrefix(err.Error(), "reaper panicked: nil map") {
			t.Fatalf("Failed = %v, want the reaper and its panic named", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a panicking service was not reported")
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatalf("Stop = %v", err)
	}
}

// Two services of one name cannot be told apart in a report: Start refuses
// them at once rather than naming the wrong one later.
func TestGroupRefusesTwoServicesOfOneName(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `two services named "reaper"`) {
			t.Fatalf("Start with two services named reaper: recovered %v, want a panic naming them", r)
		}
	}()
	g := lifecycle.Start(context.Background(), quiet,
		lifecycle.Named{Name: "reaper", Service: lifecycle.Func(untilDone)},
		lifecycle.Named{Name: "reaper", Service: lifecycle.Func(untilDone)},
	)
	_ = g.Stop(context.Background())
}
