package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
)

// runToken mints a token, signed with RUNLEDGER_AUTH_SECRET or else the dev
// data directory's secret (the one `runledger dev` signs with).
func runToken(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	dataDir := fs.String("data-dir", ".data", "the dev data directory, whose auth-secret signs the token unless RUNLEDGER_AUTH_SECRET is set")
	business := fs.String("business", "", "business id, or * (operators only)")
	role := fs.String("role", "", "worker, user or operator")
	subject := fs.String("subject", "", "who holds it (e.g. alice, dialer-7); events they cause name them as role:subject")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parse(fs, args); err != nil {
		return err
	}
	secret, source, err := signingSecret(*dataDir)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	auth, err := api.NewAuthenticator(secret, nil)
	if err != nil {
		return fmt.Errorf("token: the secret in %s: %w", source, err)
	}
	tok, err := auth.MintToken(api.TokenSpec{Business: *business, Role: api.Role(*role), Subject: *subject, TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func runRebuild(ctx context.Context, args []string) error {
	cmd := newDBCommand("rebuild")
	projection := cmd.String("projection", "", "rebuild only this read model ("+strings.Join(projections.Names, ", ")+")")
	pool, err := cmd.open(ctx, args)
	if err != nil {
		return err
	}
	opts := projections.RebuildOptions{Progress: os.Stderr}
	if *projection != "" {
		opts.Projections = []string{*projection}
	}
	defer pool.Close()
	stats, err := projections.Rebuild(ctx, pool, opts)
	for _, st := range stats {
		rate := float64(st.Events) / st.Duration.Seconds()
		fmt.Printf("rebuilt %s: %d events folded, %d caught up, %d rows, %s (%.0f events/s)\n",
			st.Projection, st.Events, st.CaughtUp, st.Rows, st.Duration.Round(time.Millisecond), rate)
	}
	return err
}

func runVerify(ctx context.Context, args []string) error {
	pool, err := newDBCommand("verify").open(ctx, args)
	if err != nil {
		return err
	}
	defer pool.Close()
	diffs, err := projections.Verify(ctx, pool)
	if err != nil {
		return err
	}
	for _, d := range diffs {
		fmt.Println(d)
	}
	if len(diffs) > 0 {
		fmt.Printf("verify: %d differences between the live read models and a rebuild from the log\n", len(diffs))
		return exitError(1)
	}
	fmt.Println("verify: live read models equal a rebuild from the log")
	return nil
}

func runAudit(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	cfg.bindServe(fs)
	business := fs.String("business", "", "business id (required)")
	run := fs.String("run", "", "only this run")
	since := fs.String("since", "", "from this instant (RFC 3339)")
	until := fs.String("until", "", "before this instant (RFC 3339)")
	at := fs.String("at", "", "replay the state at this instant (RFC 3339)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.envError(); err != nil {
		return err
	}
	q, atT, err := auditQuery(*business, *run, *since, *until, *at)
	if err != nil {
		return err
	}
	// Runs judged by their own recorded policy; these flags only stand in
	// for runs started before runs recorded theirs.
	policy := domain.Policy{StaleAfter: cfg.StaleAfter, HeartbeatMinInterval: cfg.HeartbeatMinInterval, StallAfter: cfg.StallAfter}
	pool, err := openPool(ctx, cfg.DatabaseURL, opsPool("audit"))
	if err != nil {
		return err
	}
	defer pool.Close()
	store := eventstore.New(pool)
	if !atT.IsZero() {
		res, err := audit.Replay(ctx, store, q.BusinessID, atT, policy)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(res)
		}
		return audit.WriteReplay(os.Stdout, res)
	}
	entries, err := audit.Timeline(ctx, store, q, policy)
	if err != nil {
		return err
	}
	records, err := store.LifecycleRecords(ctx, q.BusinessID, q.RunID)
	if err != nil {
		return err
	}
	if records == nil {
		records = []eventstore.LifecycleRecord{}
	}
	if *asJSON {
		// The array of timeline entries, as before compaction existed
		// (scripts parse it); the compactions and erasures are in the text
		// output and in GET /v1/businesses/{b}/timeline's "lifecycle".
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if err := audit.WriteTimeline(os.Stdout, entries); err != nil {
		return err
	}
	return audit.WriteLifecycle(os.Stdout, records)
}

// auditQuery validates the audit flags.
func auditQuery(business, run, since, until, at string) (eventstore.BusinessQuery, time.Time, error) {
	q := eventstore.BusinessQuery{BusinessID: business}
	if business == "" {
		return q, time.Time{}, fmt.Errorf("audit: --business is required")
	}
	if err := domain.ValidateBusinessID(business); err != nil {
		return q, time.Time{}, fmt.Errorf("audit: --business: %w", err)
	}
	var err error
	if run != "" {
		if q.RunID, err = uuid.Parse(run); err != nil {
			return q, time.Time{}, fmt.Errorf("audit: --run must be a UUID")
		}
	}
	parse := func(name, v string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, fmt.Errorf("audit: --%s must be RFC 3339 (2026-11-28T09:00:00Z)", name)
		}
		return t.UTC(), nil
	}
	if q.Since, err = parse("since", since); err != nil {
		return q, time.Time{}, err
	}
	if q.Until, err = parse("until", until); err != nil {
		return q, time.Time{}, err
	}
	atT, err := parse("at", at)
	return q, atT, err
}
