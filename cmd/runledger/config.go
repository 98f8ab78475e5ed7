package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/runledger/runledger/domain"
)

// Config is the service configuration; every flag has an environment equivalent.
type Config struct {
	DatabaseURL          string
	Addr                 string
	StaleAfter           time.Duration
	StallAfter           time.Duration
	ReapInterval         time.Duration
	HeartbeatMinInterval time.Duration
	AuthSecret           string
	LogLevel             string
	NoMigrate            bool
	// DebugAddr, if set, serves net/http/pprof there (keep it on loopback).
	DebugAddr string
	// MetricsAddr, if set, serves /metrics there instead of on Addr.
	MetricsAddr string
	// RequestTimeout is every request's deadline (streams excepted).
	RequestTimeout time.Duration
	// MaxReadLag is how far behind the log a read model may be for GET
	// active and the stream to judge from it (capped at a quarter of the TTL).
	MaxReadLag time.Duration
	// MaxStreams and MaxStreamsPerToken cap the open SSE streams.
	MaxStreams, MaxStreamsPerToken int
	// ConsistencyWait is how long a read given ?after= waits for its read
	// model to apply that position before answering 503.
	ConsistencyWait time.Duration
	// AppendBatchMax bounds the commands appended in one statement (1: no batching).
	AppendBatchMax int
	// NotifyAppends makes every append statement NOTIFY the other replicas.
	NotifyAppends bool
	// CompactEndedBefore, if positive, makes serve compact runs ended longer
	// ago than it, every CompactInterval (off by default).
	CompactEndedBefore, CompactInterval time.Duration
	// ShutdownTimeout bounds serve's graceful shutdown.
	ShutdownTimeout time.Duration
	// WebhookAllowPrivate lets webhooks reach loopback, private, link-local
	// and metadata addresses; WebhookAllowInsecure accepts http:// URLs.
	WebhookAllowPrivate, WebhookAllowInsecure bool

	// envErrs are malformed environment values, reported by Policy.
	envErrs []error
	// clockSkew offsets this process's own clock (tests of clock skew only).
	clockSkew time.Duration
}

// bindCommon registers the flags shared by the commands that touch the
// database; defaults come from the environment, then the contract's defaults.
func (c *Config) bindCommon(fs *flag.FlagSet) {
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	fs.StringVar(&c.LogLevel, "log-level", envOr("RUNLEDGER_LOG_LEVEL", "info"), "debug, info, warn or error (env RUNLEDGER_LOG_LEVEL)")
	c.AuthSecret = os.Getenv("RUNLEDGER_AUTH_SECRET") // never a flag: flags show up in ps
}

// bindServe registers the flags of serve and dev.
func (c *Config) bindServe(fs *flag.FlagSet) {
	c.bindCommon(fs)
	fs.StringVar(&c.Addr, "addr", envOr("RUNLEDGER_ADDR", "127.0.0.1:8080"), "listen address (env RUNLEDGER_ADDR)")
	fs.Func("stale-after", "TTL after which a silent run is not active (env RUNLEDGER_STALE_AFTER, default 15m)", durationFlag(&c.StaleAfter))
	fs.Func("stall-after", "how long heartbeats may carry no progress before a run is flagged stalled, for runs that do not set their own (env RUNLEDGER_STALL_AFTER, default 10m)", durationFlag(&c.StallAfter))
	fs.Func("reap-interval", "how often the reaper looks for silent runs (env RUNLEDGER_REAP_INTERVAL, default 10s)", durationFlag(&c.ReapInterval))
	fs.Func("heartbeat-min-interval", "least time between stored heartbeats (env RUNLEDGER_HEARTBEAT_MIN_INTERVAL, default 5s)", durationFlag(&c.HeartbeatMinInterval))
	fs.BoolVar(&c.NoMigrate, "no-migrate", false, "do not apply migrations at start")
	fs.StringVar(&c.DebugAddr, "debug-addr", os.Getenv("RUNLEDGER_DEBUG_ADDR"), "serve pprof on this address, e.g. 127.0.0.1:6060 (env RUNLEDGER_DEBUG_ADDR; off when empty)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", os.Getenv("RUNLEDGER_METRICS_ADDR"), "serve /metrics on this address instead of --addr, e.g. 127.0.0.1:9090 (env RUNLEDGER_METRICS_ADDR; off when empty)")
	fs.Func("request-timeout", "deadline of every request, streams excepted (env RUNLEDGER_REQUEST_TIMEOUT, default 5s)", durationFlag(&c.RequestTimeout))
	c.StaleAfter = c.envDuration("RUNLEDGER_STALE_AFTER", 15*time.Minute)
	c.StallAfter = c.envDuration("RUNLEDGER_STALL_AFTER", 10*time.Minute)
	c.ReapInterval = c.envDuration("RUNLEDGER_REAP_INTERVAL", 10*time.Second)
	c.HeartbeatMinInterval = c.envDuration("RUNLEDGER_HEARTBEAT_MIN_INTERVAL", 5*time.Second)
	fs.Func("max-read-lag", "how far behind the log a read model may be to judge 'active' from (env RUNLEDGER_MAX_READ_LAG, default 5s, at most stale-after/4)", durationFlag(&c.MaxReadLag))
	fs.IntVar(&c.MaxStreams, "max-streams", c.envInt("RUNLEDGER_MAX_STREAMS", 5000), "open SSE streams per replica (env RUNLEDGER_MAX_STREAMS)")
	fs.IntVar(&c.MaxStreamsPerToken, "max-streams-per-token", c.envInt("RUNLEDGER_MAX_STREAMS_PER_TOKEN", 10), "open SSE streams per token (env RUNLEDGER_MAX_STREAMS_PER_TOKEN)")
	fs.Func("consistency-wait", "how long a read given ?after= waits for its read model (env RUNLEDGER_CONSISTENCY_WAIT, default 2s)", durationFlag(&c.ConsistencyWait))
	fs.IntVar(&c.AppendBatchMax, "append-batch-max", c.envInt("RUNLEDGER_APPEND_BATCH_MAX", 64), "commands appended in one statement; 1 turns batching off (env RUNLEDGER_APPEND_BATCH_MAX)")
	fs.BoolVar(&c.NotifyAppends, "notify-appends", c.envBool("RUNLEDGER_NOTIFY_APPENDS", true), "each append statement wakes the other replicas' projectors through NOTIFY (env RUNLEDGER_NOTIFY_APPENDS)")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", c.envBool("RUNLEDGER_WEBHOOK_ALLOW_PRIVATE", false), "webhooks may target loopback, private, link-local and metadata addresses (env RUNLEDGER_WEBHOOK_ALLOW_PRIVATE; for tests and closed networks)")
	fs.BoolVar(&c.WebhookAllowInsecure, "webhook-allow-insecure", c.envBool("RUNLEDGER_WEBHOOK_ALLOW_INSECURE", false), "webhook URLs may use http, not only https (env RUNLEDGER_WEBHOOK_ALLOW_INSECURE)")
	fs.Func("shutdown-timeout", "how long a graceful shutdown may take before the process exits 1 naming what did not stop (env RUNLEDGER_SHUTDOWN_TIMEOUT, default 20s)", durationFlag(&c.ShutdownTimeout))
	c.ShutdownTimeout = c.envDuration("RUNLEDGER_SHUTDOWN_TIMEOUT", 20*time.Second)
	c.RequestTimeout = c.envDuration("RUNLEDGER_REQUEST_TIMEOUT", 5*time.Second)
	c.ConsistencyWait = c.envDuration("RUNLEDGER_CONSISTENCY_WAIT", 2*time.Second)
	c.MaxReadLag = c.envDuration("RUNLEDGER_MAX_READ_LAG", 5*time.Second)
	fs.Func("compact-ended-before", "compact runs ended longer ago than this, e.g. 720h; off when 0 (env RUNLEDGER_COMPACT_ENDED_BEFORE, default 0)", durationFlag(&c.CompactEndedBefore))
	fs.Func("compact-interval", "how often serve compacts when --compact-ended-before is set (env RUNLEDGER_COMPACT_INTERVAL, default 1h)", durationFlag(&c.CompactInterval))
	c.CompactEndedBefore = c.envDuration("RUNLEDGER_COMPACT_ENDED_BEFORE", 0)
	c.CompactInterval = c.envDuration("RUNLEDGER_COMPACT_INTERVAL", time.Hour)
}

// readLagBound is MaxReadLag, at most a quarter of the TTL: a read model
// behind by more than that could show a live run as silent.
func (c *Config) readLagBound() time.Duration {
	return min(c.MaxReadLag, c.StaleAfter/4)
}

// Policy returns the domain policy, or an error naming the bad setting.
func (c *Config) Policy() (domain.Policy, error) {
	p := domain.Policy{StaleAfter: c.StaleAfter, HeartbeatMinInterval: c.HeartbeatMinInterval, StallAfter: c.StallAfter}
	if err := c.envError(); err != nil {
		return p, err
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("configuration: %w", err)
	}
	if c.ReapInterval <= 0 {
		return p, fmt.Errorf("configuration: --reap-interval must be positive")
	}
	if c.RequestTimeout <= 0 {
		return p, fmt.Errorf("configuration: --request-timeout must be positive")
	}
	if c.ShutdownTimeout <= 0 {
		return p, fmt.Errorf("configuration: --shutdown-timeout must be positive")
	}
	if c.MaxReadLag <= 0 || c.MaxStreams <= 0 || c.MaxStreamsPerToken <= 0 || c.ConsistencyWait <= 0 || c.AppendBatchMax <= 0 {
		return p, fmt.Errorf("configuration: --max-read-lag, --max-streams, --max-streams-per-token, --consistency-wait and --append-batch-max must be positive")
	}
	return p, nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// envError returns an error naming each malformed environment value read so
// far, or nil: Policy, the database commands and audit report it.
func (c *Config) envError() error {
	if err := errors.Join(c.envErrs...); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}

// envDuration reads a duration from the environment; a malformed value is
// kept as an error that envError reports (a startup error naming the
// variable), never silently replaced by the default.
func (c *Config) envDuration(key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", key, v, err))
		return def
	}
	return d
}

// envInt reads an integer from the environment like envDuration.
func (c *Config) envInt(key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", key, v, err))
		return def
	}
	return n
}

// envBool reads a boolean from the environment like envDuration.
func (c *Config) envBool(key string, def bool) bool {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", key, v, err))
		return def
	}
	return b
}

func durationFlag(dst *time.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*dst = d
		return nil
	}
}

// newLogger returns the JSON logger at level (debug, info, warn or error),
// or an error naming the bad level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
		return nil, fmt.Errorf("configuration: --log-level (RUNLEDGER_LOG_LEVEL) %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
