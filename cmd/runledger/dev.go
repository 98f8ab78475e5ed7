package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pglocal"
)

// devBusiness is the business the printed tokens and curl lines use.
const devBusiness = "demo"

// runDev is `make run`: a local PostgreSQL cluster under ./.data (started as
// the postgres user when root), a database, a persisted secret, migrations,
// the service, and tokens and curl lines that work when pasted.
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
	secretPath := "RUNLEDGER_AUTH_SECRET"
	if cfg.AuthSecret == "" {
		secretPath = filepath.Join(dir, "auth-secret")
		if cfg.AuthSecret, err = devSecret(secretPath); err != nil {
			return err
		}
	}
	svc, err := newService(ctx, cfg, logger)
	if err != nil {
		return err
	}
	auth, _ := api.NewAuthenticator(cfg.AuthSecret, nil)
	if err := printDevBanner(os.Stdout, auth, svc.URL(), cfg.DatabaseURL, secretPath); err != nil {
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

// devSecret reads the dev secret, creating a random one on first use.
func devSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= api.MinSecretLen {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(raw)
	return secret, os.WriteFile(path, []byte(secret+"\n"), 0o600)
}

// printDevBanner prints tokens and curl lines that work when pasted; secret
// says where the signing secret comes from (a file, or the environment).
func printDevBanner(w io.Writer, auth *api.Authenticator, url, dbURL, secret string) error {
	tok := func(b string, r api.Role, subject string) string {
		t, err := auth.MintToken(api.TokenSpec{Business: b, Role: r, Subject: subject, TTL: 24 * time.Hour})
		if err != nil {
			panic(err) // the dev business and roles are valid constants
		}
		return t
	}
	run := uuid.Must(uuid.NewV7()).String()
	user, operator := tok(devBusiness, api.RoleUser, "dev-user"), tok(api.AnyBusiness, api.RoleOperator, "dev-operator")
	_, err := fmt.Fprintf(w, `
runledger dev is up: %[1]s   (database %[2]s)

Open the page (the token rides after '#', which never reaches the server; the page keeps it for this tab):
  business %[7]s:   %[1]s/#token=%[5]s
  operator console: %[1]s/#token=%[6]s

Paste these into a shell (tokens valid for 24h, secret in %[8]s):

export RL=%[1]s RUN=%[3]s
export WORKER_TOKEN=%[4]s
export USER_TOKEN=%[5]s
export OPERATOR_TOKEN=%[6]s

# a worker starts a run, then heartbeats it
curl -s -X POST $RL/v1/businesses/%[7]s/runs -H "Authorization: Bearer $WORKER_TOKEN" -H 'Content-Type: application/json' -d "{\"run_id\":\"$RUN\",\"total_calls\":100,\"worker_id\":\"dialer-1\"}"
curl -s -X POST $RL/v1/businesses/%[7]s/runs/$RUN/heartbeat -H "Authorization: Bearer $WORKER_TOKEN" -H 'Content-Type: application/json' -d '{"completed_calls":10,"failed_calls":1}'
# the page asks for the active run, then the user cancels it
curl -s $RL/v1/businesses/%[7]s/runs/active -H "Authorization: Bearer $USER_TOKEN"
curl -s -X POST $RL/v1/businesses/%[7]s/runs/$RUN/cancel -H "Authorization: Bearer $USER_TOKEN" -H 'Content-Type: application/json' -d '{"reason":"stop"}'
# the worker's next heartbeat is told to stop
curl -s -X POST $RL/v1/businesses/%[7]s/runs/$RUN/heartbeat -H "Authorization: Bearer $WORKER_TOKEN" -H 'Content-Type: application/json' -d '{"completed_calls":12,"failed_calls":1}'
# support: the business's history
curl -s "$RL/v1/businesses/%[7]s/timeline" -H "Authorization: Bearer $OPERATOR_TOKEN"
# live progress (Server-Sent Events): curl -N $RL/v1/businesses/%[7]s/runs/active/stream -H "Authorization: Bearer $USER_TOKEN"

Health %[1]s/healthz, readiness %[1]s/readyz, metrics %[1]s/metrics, API %[1]s/v1/openapi.json
Stop with Ctrl-C (the local PostgreSQL stops too).
`, url, redact(dbURL), run, tok(devBusiness, api.RoleWorker, "dialer-1"), user, operator, devBusiness, secret)
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
