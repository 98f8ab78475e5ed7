package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/demo"
)

// runDemo is `runledger demo` (`make demo`): it parses the flags, finds the
// secret that signs the demo's tokens, and plays the demo (internal/demo)
// against a running server.
func runDemo(ctx context.Context, args []string) error {
	cfg := demo.Defaults()
	cfg.Out = os.Stdout
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", cfg.URL, "the server (e.g. the one 'make run' started)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop the random dialing after this long (default: until Ctrl-C); the opening act plays to its end")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "simulated dialers")
	fs.IntVar(&cfg.Businesses, "businesses", cfg.Businesses, "businesses they dial for (demo, demo-2, …); the opening act needs 4")
	dataDir := fs.String("data-dir", ".data", "the dev data directory, whose auth-secret signs the tokens unless RUNLEDGER_AUTH_SECRET is set")
	fs.DurationVar(&cfg.StaleAfter, "stale-after", cfg.StaleAfter, "the TTL each run asks for (1m-24h; the server's if that is shorter), so a crashed worker is reaped within the demo")
	fs.BoolVar(&cfg.OpeningAct, "opening-act", cfg.OpeningAct, "open with the scripted act that shows every ending of a run (about the TTL long)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.Workers < 1 || cfg.Businesses < 1 {
		return errors.New("demo: --workers and --businesses must be at least 1")
	}
	if cfg.Duration < 0 {
		return errors.New("demo: --duration must not be negative")
	}
	if cfg.StaleAfter != 0 && (cfg.StaleAfter < domain.RunPolicyMin || cfg.StaleAfter > domain.RunPolicyMax) {
		return fmt.Errorf("demo: --stale-after must be between %s and %s (what a run may ask for), or 0 for the server's", domain.RunPolicyMin, domain.RunPolicyMax)
	}
	secret, source, err := signingSecret(*dataDir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	auth, err := api.NewAuthenticator(secret, nil)
	if err != nil {
		return fmt.Errorf("demo: the secret in %s: %w", source, err)
	}
	cfg.Mint = func(business, role string) (string, error) {
		return auth.Mint(business, api.Role(role), 24*time.Hour)
	}
	cfg.ShortIDs = audit.ShortIDs
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		cfg.Live = true
	}
	rep, err := demo.Play(ctx, cfg)
	if err != nil {
		return err
	}
	if rep.Unexpected > 0 {
		return exitError(1)
	}
	return nil
}
