package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pglocal"
)

// devBusiness is the business the printed tokens and curl lines use.
const devBusiness = "demo"

// runDev is `make run`: a local PostgreSQL cluster under ./.data (started as
// the postgres user when root), a database, a persisted secret, migrations,
// the service, and tokens and curl lines that work when pasted. Every flag
// is checked before anything is written to the data directory.
func runDev(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	cfg.bindServe(fs)
	dataDir := fs.String("data-dir", ".data", "where the local cluster and the dev secret live")
	if err := parse(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	if _, err := cfg.Policy(); err != nil {
		return err
	}
	if cfg.AuthSecret != "" {
		if _, err := api.NewAuthenticator(cfg.AuthSecret, nil); err != nil {
			return fmt.Errorf("configuration: %s: %w", secretEnv, err)
		}
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "dev: starting PostgreSQL in %s …\n", filepath.Join(dir, "pg"))
	cluster, err := pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(dir, "pg"), LogFile: filepath.Join(dir, "pg", "server.log")})
	if err != nil {
		return err
	}
	defer func() {
		if err := cluster.Stop(context.Background()); err != nil {
			logger.Error("stop PostgreSQL", "err", err)
		}
	}()
	if cfg.DatabaseURL == "" {
		if err := ensureDatabase(ctx, cluster.URL("postgres"), "runledger"); err != nil {
			return err
		}
		cfg.DatabaseURL = cluster.URL("runledger")
	}
	// Where the signing secret comes from, for the banner: the environment,
	// or the file this data directory keeps (created on first use).
	secretSource := "the environment (" + secretEnv + ")"
	if cfg.AuthSecret == "" {
		secretSource = filepath.Join(dir, devSecretFile)
		if cfg.AuthSecret, err = devSecret(secretSource); err != nil {
			return err
		}
	}
	svc, err := newService(ctx, cfg, logger)
	if err != nil {
		return err
	}
	auth, _ := api.NewAuthenticator(cfg.AuthSecret, nil)
	if err := printDevBanner(os.Stdout, auth, devBanner{URL: svc.URL(), DatabaseURL: cfg.DatabaseURL,
		SecretSource: secretSource, HeartbeatMinInterval: cfg.HeartbeatMinInterval}); err != nil {
		return err
	}
	return svc.Run(ctx)
}

func ensureDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to the local cluster: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	return err
}

// devBanner is what `runledger dev` prints once it serves.
type devBanner struct {
	URL, DatabaseURL string
	// SecretSource says where the signing secret comes from: a file, or the environment.
	SecretSource string
	// HeartbeatMinInterval paces the curl lines so that their heartbeats are stored.
	HeartbeatMinInterval time.Duration
}

// printDevBanner prints the page's links, tokens and curl lines that work
// when pasted as one block, and again: each paste starts a new run (the
// server picks its id), waits out the heartbeat coalescing interval so that
// each heartbeat is stored and moves the bar, and completes the run, so no
// run is left open.
func printDevBanner(w io.Writer, auth *api.Authenticator, b devBanner) error {
	tok := func(business string, r api.Role, subject string) string {
		t, err := auth.MintToken(api.TokenSpec{Business: business, Role: r, Subject: subject, TTL: 24 * time.Hour})
		if err != nil {
			panic(err) // the dev business and roles are valid constants
		}
		return t
	}
	// A heartbeat closer than the minimum interval to the last stored sign of
	// life is acknowledged but not stored ("recorded":false): wait it out.
	pause := int((b.HeartbeatMinInterval+time.Second-1)/time.Second) + 1
	user, operator := tok(devBusiness, api.RoleUser, "dev-user"), tok(api.AnyBusiness, api.RoleOperator, "dev-operator")
	const worker = `-H "Authorization: Bearer $WORKER_TOKEN" -H 'Content-Type: application/json'`
	_, err := fmt.Fprintf(w, `
runledger dev is up: %[1]s   (database %[2]s)

Open the page (the token rides after '#', which never reaches the server; the page keeps it for this tab):
  business %[3]s:   %[1]s/#token=%[4]s
  operator console: %[1]s/#token=%[5]s

Paste these into a shell, with the business page open beside it (tokens valid for 24h, signed with the secret in %[6]s).
Each paste starts a new run and completes it (about %[9]d s):

export RL=%[1]s
export WORKER_TOKEN=%[7]s
export USER_TOKEN=%[4]s
export OPERATOR_TOKEN=%[5]s

# a worker starts a run of 100 calls (the server picks its id) ...
RUN=$(curl -s -X POST $RL/v1/businesses/%[3]s/runs %[8]s -d '{"total_calls":100,"worker_id":"dialer-1"}' | tee /dev/stderr | sed -n 's/^{"run_id":"\([^"]*\)".*/\1/p'); echo
# ... and heartbeats its progress; one closer than %[10]s to the last stored one is acknowledged but not stored, so each waits
sleep %[11]d; curl -s -X POST %[12]s/$RUN/heartbeat %[8]s -d '{"completed_calls":40,"failed_calls":2}'; echo
# the page asks for the active run
curl -s $RL/v1/businesses/%[3]s/runs/active -H "Authorization: Bearer $USER_TOKEN"; echo
sleep %[11]d; curl -s -X POST %[12]s/$RUN/heartbeat %[8]s -d '{"completed_calls":80,"failed_calls":4}'; echo
# the worker finishes its list: the bar goes, the history says completed
sleep %[11]d; curl -s -X POST %[12]s/$RUN/complete %[8]s -d '{"outcome":"completed","completed_calls":95,"failed_calls":5}'; echo
# support: the business's history
curl -s "$RL/v1/businesses/%[3]s/timeline" -H "Authorization: Bearer $OPERATOR_TOKEN"; echo

# Or let the user cancel a running run ($RUN as above, before its complete): the worker's next heartbeat answers
# "cancel_requested":true and the worker then completes it with "outcome":"cancelled":
#   curl -s -X POST %[12]s/$RUN/cancel -H "Authorization: Bearer $USER_TOKEN" -H 'Content-Type: application/json' -d '{"reason":"stop"}'
# Live progress (Server-Sent Events): curl -N $RL/v1/businesses/%[3]s/runs/active/stream -H "Authorization: Bearer $USER_TOKEN"
# Another token (run from this directory, it signs with the same secret): runledger token --business %[3]s --role user --subject alice
# Simulated dialers on every business: make demo

Health %[1]s/healthz, readiness %[1]s/readyz, metrics %[1]s/metrics, API %[1]s/v1/openapi.json
Stop with Ctrl-C (the local PostgreSQL stops too).
`, b.URL, redact(b.DatabaseURL), devBusiness, user, operator, b.SecretSource,
		tok(devBusiness, api.RoleWorker, "dialer-1"), worker, 3*pause, b.HeartbeatMinInterval, pause, "$RL/v1/businesses/"+devBusiness+"/runs")
	return err
}

// redact drops a password from a connection URL before it is printed.
func redact(u string) string {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "(unparseable DATABASE_URL)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}
