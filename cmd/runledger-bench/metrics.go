package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the served process's /metrics, parsed.
func scrape(srv *served) (map[string]*dto.MetricFamily, error) {
	res, err := client.Get(srv.url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(res.Body)
}

// labelled returns the metrics of family name whose labels include want.
func labelled(families map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// serverQuantile reads the server's latency histogram of GET …/runs/active
// and returns the bucket bound holding quantile q.
func serverQuantile(srv *served, q float64) string {
	families, err := scrape(srv)
	if err != nil {
		return "?"
	}
	ms := labelled(families, "runledger_http_request_duration_seconds", map[string]string{"route": "GET /v1/businesses/{b}/runs/active", "status": "200"})
	if len(ms) == 0 {
		return "?"
	}
	h := ms[0].GetHistogram()
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= q*float64(h.GetSampleCount()) {
			return time.Duration(b.GetUpperBound() * float64(time.Second)).String()
		}
	}
	return "∞"
}

// poolWaits reads how often and how long (s) the server has waited for a database connection.
func poolWaits(srv *served) (count, seconds float64) {
	families, err := scrape(srv)
	if err != nil {
		return 0, 0
	}
	if ms := labelled(families, "runledger_db_pool_acquire_waits_total", nil); len(ms) > 0 {
		count = ms[0].GetCounter().GetValue()
	}
	if ms := labelled(families, "runledger_db_pool_acquire_wait_seconds_total", nil); len(ms) > 0 {
		seconds = ms[0].GetCounter().GetValue()
	}
	return count, seconds
}

// batchSizes returns the append batch-size histogram's buckets (upper bound
// → cumulative count) and its sample count.
func batchSizes(srv *served) (map[float64]uint64, uint64) {
	families, err := scrape(srv)
	if err != nil {
		return nil, 0
	}
	ms := labelled(families, "runledger_append_batch_size", nil)
	if len(ms) == 0 {
		return nil, 0
	}
	out := map[float64]uint64{}
	for _, b := range ms[0].GetHistogram().GetBucket() {
		out[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	return out, ms[0].GetHistogram().GetSampleCount()
}

// describeBatches says how the appends between two readings were batched:
// the share of statements by size, and the mean commands per statement.
func describeBatches(before, after map[float64]uint64, n0, n1 uint64, commands int64) string {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	statements := n1 - n0
	if statements == 0 {
		return "no append statements"
	}
	var parts []string
	prev := uint64(0)
	lower := 0.0
	for _, b := range bounds {
		c := after[b] - before[b]
		in := c - prev
		prev = c
		if in > 0 {
			parts = append(parts, fmt.Sprintf("%s: %.0f%%", sizeRange(lower, b), 100*float64(in)/float64(statements)))
		}
		lower = b
	}
	return fmt.Sprintf("%d statements for %d commands (mean %.1f per statement); by size %s", statements, commands,
		float64(commands)/float64(statements), strings.Join(parts, ", "))
}

func sizeRange(lower, upper float64) string {
	if math.IsInf(upper, 1) {
		return fmt.Sprintf(">%.0f", lower)
	}
	if upper-lower <= 1 {
		return fmt.Sprintf("%.0f", upper)
	}
	return fmt.Sprintf("%.0f-%.0f", lower+1, upper)
}

// postgresCPU is the CPU time used so far by one cluster's processes: its
// postmaster (the first line of dir/postmaster.pid) and the postmaster's
// children. Other clusters on the machine (tests running beside the bench)
// are not counted.
func postgresCPU(dir string) time.Duration {
	postmaster, children := clusterProcesses(dir)
	if postmaster == 0 {
		return 0
	}
	total := procCPU(postmaster)
	for _, pid := range children {
		total += procCPU(pid)
	}
	return total
}

// clusterProcesses is one cluster's postmaster (the first line of
// dir/postmaster.pid; 0 if none) and its children.
func clusterProcesses(dir string) (postmaster int, children []int) {
	raw, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, nil
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	if postmaster, err = strconv.Atoi(strings.TrimSpace(first)); err != nil {
		return 0, nil
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil && parentPID(pid) == postmaster {
			children = append(children, pid)
		}
	}
	return postmaster, children
}

// postgresCPUByRole splits the CPU time used so far by one cluster's
// children by what each serves: a client backend by its application_name
// (up to the first ':', so runledger's pools are named by role), any other
// process by its kind (walwriter, autovacuum worker, …). A backend's time is
// counted while it lives: compare two calls for the work in between.
func postgresCPUByRole(ctx context.Context, pool *pgxpool.Pool, dir string) map[string]time.Duration {
	roles := map[int]string{}
	rows, err := pool.Query(ctx, `SELECT pid, coalesce(nullif(split_part(application_name, ':', 1), ''), backend_type) FROM pg_stat_activity`)
	if err == nil {
		for rows.Next() {
			var pid int
			var role string
			if rows.Scan(&pid, &role) == nil {
				roles[pid] = role
			}
		}
		rows.Close()
	}
	postmaster, children := clusterProcesses(dir)
	if postmaster == 0 {
		return nil
	}
	out := map[string]time.Duration{"postmaster": procCPU(postmaster)}
	for _, pid := range children {
		role := roles[pid]
		if role == "" {
			role = "other"
		}
		out[role] += procCPU(pid)
	}
	return out
}

// cpuDelta adds after−before, role by role, to into.
func cpuDelta(into, before, after map[string]time.Duration) {
	for role, t := range after {
		if d := t - before[role]; d > 0 {
			into[role] += d
		}
	}
}

// describeRoles is the CPU per stored heartbeat of each role, largest first.
func describeRoles(byRole map[string]time.Duration, stored int64) string {
	roles := make([]string, 0, len(byRole))
	for role := range byRole {
		roles = append(roles, role)
	}
	sort.Slice(roles, func(i, j int) bool { return byRole[roles[i]] > byRole[roles[j]] })
	parts := make([]string, 0, len(roles))
	for _, role := range roles {
		if us := float64(byRole[role].Microseconds()) / float64(max(stored, 1)); us >= 0.5 {
			parts = append(parts, fmt.Sprintf("%s %.0f µs", role, us))
		}
	}
	return strings.Join(parts, ", ")
}

// parentPID reads a process's parent from /proc/<pid>/stat (0 if gone).
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
