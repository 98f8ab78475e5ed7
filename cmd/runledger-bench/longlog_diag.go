package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// b11Diag is BENCH_B11_DIAG: a directory that receives each side's serve
// CPU profile over B11's interleaved GET active reads, while the bench
// prints where the machine's CPU went meanwhile, what the read models held
// before, and how many slow answers each server measured against how many its client
// saw (a tail the server did not see is the machine's, not the service's).
var b11Diag = os.Getenv("BENCH_B11_DIAG")

// b11DebugAddr is the pprof address of a side's serve under BENCH_B11_DIAG
// (fixed, so that a profile can also be taken by hand; a port in use stops
// that serve at start).
func b11DebugAddr(name string) string {
	if b11Diag == "" {
		return ""
	}
	if name == "long" {
		return "127.0.0.1:6072"
	}
	return "127.0.0.1:6071"
}

// b11Observe starts the diagnostics of B11's interleaved GET active reads
// (d long) and returns the function that ends them and prints them.
func b11Observe(ctx context.Context, sides []*b11Side, d time.Duration) (func(reads [][]activeRead), error) {
	if b11Diag == "" {
		return func([][]activeRead) {}, nil
	}
	if err := os.MkdirAll(b11Diag, 0o755); err != nil {
		return nil, err
	}
	buckets := make([]map[string]float64, len(sides))
	for k, side := range sides {
		buckets[k] = activeBuckets(side.srv)
		fmt.Fprintf(os.Stderr, "bench: B11 diag: before GET active, %s: %s\n", side.name, readModelState(ctx, side.pool))
	}
	time.Sleep(time.Second) // the scrapes' own queries pass before the reads start
	profiled := make([]chan struct{}, len(sides))
	for k, side := range sides {
		profiled[k] = profileServe(b11DebugAddr(side.name), filepath.Join(b11Diag, "active-"+side.name+".pb"), d)
	}
	ticks := readProcTicks()
	return func(reads [][]activeRead) {
		fmt.Fprintf(os.Stderr, "bench: B11 diag: GET active: CPU ticks by process:%s\n", describeTicks(ticks, readProcTicks()))
		for k, side := range sides {
			<-profiled[k]
			now := activeBuckets(side.srv)
			var slow strings.Builder
			for _, le := range []string{"0.0005", "0.001", "0.002"} {
				limit, _ := time.ParseDuration(le + "s")
				seen := 0
				for _, r := range reads[k] {
					if r.latency > limit {
						seen++
					}
				}
				fmt.Fprintf(&slow, " over %s: served %.0f, seen %d;", limit, (now["+Inf"]-buckets[k]["+Inf"])-(now[le]-buckets[k][le]), seen)
			}
			fmt.Fprintf(os.Stderr, "bench: B11 diag: GET active %s (serve pid %d): %d answered;%s\n", side.name, side.srv.cmd.Process.Pid, len(reads[k]), slow.String())
		}
	}, nil
}

// activeBuckets reads the cumulative buckets of GET …/runs/active's 200s
// from srv's /metrics, by upper bound.
func activeBuckets(srv *served) map[string]float64 {
	out := map[string]float64{}
	res, err := client.Get(srv.url + "/metrics")
	if err != nil {
		return out
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "runledger_http_request_duration_seconds_bucket{") || !strings.Contains(line, `runs/active"`) || !strings.Contains(line, `status="200"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `le="`)
		le, value, _ := strings.Cut(rest, `"} `)
		var v float64
		fmt.Sscan(value, &v)
		out[le] = v
	}
	return out
}

// procTicks is the CPU ticks (user and system) each process has used, by
// pid, with a label: the first words of its command line (a PostgreSQL
// backend's user and database, a helper's role).
type procTicks map[int]procUse

// procUse is one process's label and CPU ticks.
type procUse struct {
	label string
	ticks int64
}

func readProcTicks() procTicks {
	out := procTicks{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		var pid int
		if _, err := fmt.Sscan(filepath.Base(dir), &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		var utime, stime int64
		fmt.Sscan(f[11], &utime)
		fmt.Sscan(f[12], &stime)
		cmd, _ := os.ReadFile(dir + "/cmdline")
		out[pid] = procUse{procLabel(pid, s[strings.IndexByte(s, '(')+1:i], strings.Fields(strings.ReplaceAll(string(cmd), "\x00", " "))), utime + stime}
	}
	return out
}

// procLabel names a process for describeTicks: a PostgreSQL process by its
// role (a backend by its user and database), runledger by its pid (B11's
// two serves), anything else by its program.
func procLabel(pid int, comm string, args []string) string {
	switch {
	case len(args) == 0:
		return "[" + comm + "]"
	case args[0] == "postgres:" && len(args) > 1 && args[1] == "autovacuum":
		return strings.Join(args[:min(4, len(args))], " ") // postgres: autovacuum worker <database>
	case args[0] == "postgres:":
		return strings.Join(args[:min(3, len(args))], " ")
	case filepath.Base(args[0]) == "runledger":
		return fmt.Sprintf("runledger %d", pid)
	}
	return filepath.Base(args[0])
}

// describeTicks is where the CPU went between two readings, by label,
// largest first.
func describeTicks(before, after procTicks) string {
	by := map[string]int64{}
	for pid, a := range after {
		by[a.label] += a.ticks - before[pid].ticks
	}
	keys := make([]string, 0, len(by))
	for k, v := range by {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(a, b int) bool { return by[keys[a]] > by[keys[b]] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %d,", k, by[k])
	}
	return b.String()
}

// readModelState is what the reads find in active_runs, and what vacuum
// owes it and runs: live and dead rows, size, the last autovacuum.
func readModelState(ctx context.Context, pool *pgxpool.Pool) string {
	list, err := queryStrings(ctx, pool, `SELECT relname || ': ' || n_live_tup || ' live, ' || n_dead_tup || ' dead, ' || pg_relation_size(relid) / 8192 || ' pages, last autovacuum ' || coalesce(to_char(now() - last_autovacuum, 'HH24:MI:SS') || ' ago', 'never')
		FROM pg_stat_user_tables WHERE relname IN ('active_runs', 'runs', 'run_snapshots') ORDER BY relname`)
	if err != nil {
		return err.Error()
	}
	return strings.Join(list, "; ")
}
