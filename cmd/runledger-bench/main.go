// Command runledger-bench measures runledger against this machine's own
// limits: each workload beside a baseline measured in the same run on the
// same PostgreSQL, reported as a ratio. `make bench` runs it; BENCH_QUICK=1
// runs a smaller version; -only B1,B3 runs some workloads. `runledger-bench
// thin-store` runs B1's floor, the thinnest durable heartbeat store (thin.go).
//
// Diagnostic knobs: BENCH_DEBUG_SQL=1 prints pg_stat_statements (and HOT
// updates) over B1's turns and after B6,
// BENCH_DEBUG_LAG=1 prints B3's large lags, BENCH_B6_NO_WRITES=1 runs B6's
// reads alone, SERVE_GOGC and SERVE_DEBUG_ADDR set the served process's
// GOGC and pprof address (SERVE_GOMEMLIMIT its GOMEMLIMIT, when set),
// BENCH_B1_PROFILE=file writes serve's CPU profile over B1's first runledger
// turn (with SERVE_DEBUG_ADDR), BENCH_B9_WATCHERS=n runs B9 with n watchers
// instead of the mode's, BENCH_B11_DIAG=dir keeps both B11 serves' CPU
// profiles over the interleaved GET active reads and prints where the
// machine's CPU went meanwhile and each server's slow answers beside its
// client's (longlog_diag.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pglocal"
	"github.com/runledger/runledger/migrations"
)

const secret = "bench-secret-bench-secret-bench-secret"

// warmup runs before a steady-state workload is measured: a fresh server
// process opens its connections (each a new PostgreSQL backend loading its
// catalog caches) and fills its caches during the first seconds.
const warmup = 3 * time.Second

// sizes are the workload sizes of one mode.
type sizes struct {
	B1Duration       time.Duration
	B2Commands       int
	B3Duration       time.Duration
	B4Runs           int // × 100 events
	B5Runs, B5Silent int
	B5TTL            time.Duration
	B5Interval       time.Duration
	B6Duration       time.Duration
	B8Events         int
	B3IdleAppends    int
	B9Businesses     int // each business's run heartbeating 1/s
	B9Watchers       int // SSE watchers spread evenly over B9's businesses
	B9Duration       time.Duration
	B10Heartbeats    int
	B11Events        int // the long log of B11
	B11Duration      time.Duration
	B12Events        int // compaction's long log (B11's shape)
	B14Watchers      int // idle pages, one business each
	B14Busy          int // runs heartbeating 1/s beside them
	B14Duration      time.Duration
	B14Starts        int
	B13Endpoints     int // × B13Events webhook deliveries
	B13Events        int
	B13Steady        time.Duration // B13's latency phase, at half the burst's capacity
}

var full = sizes{B1Duration: 30 * time.Second, B2Commands: 2000, B3Duration: 60 * time.Second, B4Runs: 10_000,
	B5Runs: 10_000, B5Silent: 1_000, B5TTL: 60 * time.Second, B5Interval: 10 * time.Second,
	B6Duration: 20 * time.Second, B8Events: 100_000, B3IdleAppends: 500, B9Businesses: 500, B9Watchers: 10_000, B9Duration: 20 * time.Second,
	B10Heartbeats: 4000, B11Events: 20_000_000, B11Duration: 20 * time.Second, B12Events: 1_000_000,
	B14Watchers: 2000, B14Busy: 100, B14Duration: 30 * time.Second, B14Starts: 200,
	B13Endpoints: 100, B13Events: 1000, B13Steady: 30 * time.Second}

var quick = sizes{B1Duration: 5 * time.Second, B2Commands: 300, B3Duration: 8 * time.Second, B4Runs: 1_000,
	B5Runs: 1_000, B5Silent: 100, B5TTL: 15 * time.Second, B5Interval: 3 * time.Second,
	B6Duration: 5 * time.Second, B8Events: 100_000, B3IdleAppends: 100, B9Businesses: 500, B9Watchers: 2_000, B9Duration: 8 * time.Second,
	B10Heartbeats: 800, B11Events: 2_000_000, B11Duration: 5 * time.Second, B12Events: 100_000,
	B14Watchers: 2000, B14Busy: 100, B14Duration: 8 * time.Second, B14Starts: 100,
	B13Endpoints: 20, B13Events: 200, B13Steady: 10 * time.Second}

// bench is the run's shared state.
type bench struct {
	sizes   sizes
	bin     string
	cluster *pglocal.Cluster
	auth    *api.Authenticator
	logger  *slog.Logger
	report  *Report
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "thin-store" { // B1's floor, run as its own process
		if err := thinStoreMain(); err != nil {
			fmt.Fprintln(os.Stderr, "thin-store:", err)
			os.Exit(1)
		}
		return
	}
	out := flag.String("out", "bench-report.json", "where to write the JSON report")
	bin := flag.String("bin", "bin/runledger", "the runledger binary to serve with")
	only := flag.String("only", "", "comma-separated workload ids to run (default all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, out, only string) error {
	b := &bench{sizes: full, bin: bin, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mode := "full"
	if os.Getenv("BENCH_QUICK") != "" {
		b.sizes, mode = quick, "quick"
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: build it first (make build): %w", bin, err)
	}
	var err error
	if b.auth, err = api.NewAuthenticator(secret, nil); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "runledger-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	fmt.Fprintf(os.Stderr, "bench (%s): starting PostgreSQL …\n", mode)
	settings := map[string]string{"shared_buffers": "512MB", "max_connections": "300",
		"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
	if os.Getenv("BENCH_DEBUG_SQL") != "" {
		settings["pg_stat_statements.track_planning"] = "on" // planning's share, which execution times leave out
	}
	b.cluster, err = pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(dir, "pg"), Settings: settings})
	if err != nil {
		return err
	}
	defer b.cluster.Stop(context.Background())
	b.report = &Report{Mode: mode, Started: time.Now().UTC()}
	if err := b.describeMachine(ctx); err != nil {
		return err
	}
	workloads := []struct {
		id string
		fn func(context.Context) error
	}{
		{"B1", b.b1and6}, {"B2", b.b2}, {"B3", b.b3}, {"B3-idle", b.b3idle}, {"B4", b.b4}, {"B5", b.b5}, {"B8", b.b8},
		{"B9", b.b9}, {"B10", b.b10}, {"B11", b.b11}, {"B12", b.b12}, {"B13", b.b13}, {"B14", b.b14}, {"B15", b.b15},
	}
	for _, w := range workloads {
		if only != "" && !strings.Contains(","+only+",", ","+w.id+",") {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s …\n", w.id)
		start := time.Now()
		if err := w.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", w.id, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s done in %s\n", w.id, time.Since(start).Round(time.Second))
	}
	b.report.Finished = time.Now().UTC()
	b.report.WriteText(os.Stdout)
	raw, _ := json.MarshalIndent(b.report, "", "  ")
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nJSON report: %s\n", out)
	return nil
}

// database creates a fresh migrated database and returns its URL and a pool.
func (b *bench) database(ctx context.Context, name string) (string, *pgxpool.Pool, error) {
	admin, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return "", nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return "", nil, err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", nil, err
	}
	url := b.cluster.URL(name)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "", nil, err
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return "", nil, err
	}
	if _, err := migrations.Apply(ctx, pool); err != nil {
		pool.Close()
		return "", nil, err
	}
	return url, pool, nil
}

func (b *bench) describeMachine(ctx context.Context) error {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		first, _, _ := strings.Cut(string(raw), "\n")
		m.Memory = strings.Join(strings.Fields(first)[1:], " ")
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "model name") {
				_, m.CPU, _ = strings.Cut(line, ": ")
				break
			}
		}
	}
	conn, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT version()`).Scan(&m.PostgreSQL); err != nil {
		return err
	}
	m.Settings = map[string]string{}
	for _, name := range []string{"shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_connections", "work_mem", "checkpoint_timeout", "max_wal_size"} {
		var v string
		if err := conn.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v); err != nil {
			return err
		}
		m.Settings[name] = v
	}
	b.report.Machine = m
	return nil
}

// cpuMeter measures the load generator's (this process's) and the server's CPU share over a span.
type cpuMeter struct {
	start      time.Time
	self, srv  time.Duration
	server     *served
	busy, idle int64
}

func meterCPU(server *served) cpuMeter {
	m := cpuMeter{start: time.Now(), self: procCPU(os.Getpid()), server: server}
	m.busy, m.idle = machineTicks()
	if server != nil {
		m.srv = server.cpu()
	}
	return m
}

// machine returns the whole machine's busy fraction since the meter started
// (PostgreSQL, the server, the generator and anything else).
func (m cpuMeter) machine() float64 {
	busy, idle := machineTicks()
	db, di := busy-m.busy, idle-m.idle
	if db+di == 0 {
		return 0
	}
	return float64(db) / float64(db+di)
}

// machineTicks reads the busy and idle jiffies of all CPUs from /proc/stat.
func machineTicks() (busy, idle int64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		} else {
			busy += n
		}
	}
	return busy, idle
}

// shares returns the generator's and the server's CPU as a fraction of the
// machine (all cores) since the meter started.
func (m cpuMeter) shares() (generator, server float64) {
	capacity := time.Since(m.start).Seconds() * float64(runtime.NumCPU())
	generator = (procCPU(os.Getpid()) - m.self).Seconds() / capacity
	if m.server != nil {
		server = (m.server.cpu() - m.srv).Seconds() / capacity
	}
	return generator, server
}

func (b *bench) token(business string, role api.Role) string {
	t, err := b.auth.Mint(business, role, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	return t
}
