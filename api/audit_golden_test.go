package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/audit"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/reaper"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	run1 = "11111111-1111-4111-8111-111111111111"
	run2 = "22222222-2222-4222-8222-222222222222"
	run3 = "33333333-3333-4333-8333-333333333333"
)

// playHistory plays a business's day over HTTP, with tokens that name their
// holders: a run whose worker dies and is reaped, a run the user alice
// pauses, resumes and then cancels gracefully, a run with its own stall
// threshold that stalls, recovers and completes.
func playHistory(t *testing.T, e *env) {
	t.Helper()
	b := "/v1/businesses/acme"
	dialer1 := e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleWorker, Subject: "dialer-1"})
	dialer2 := e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleWorker, Subject: "dialer-2"})
	alice := e.tokenFor(api.TokenSpec{Business: "acme", Role: api.RoleUser, Subject: "alice"})
	step := func(advance time.Duration, method, path, token string, body any, status int) {
		t.Helper()
		e.clock.Advance(advance)
		e.must(e.do(method, b+path, token, body), status, "")
	}
	hb := func(completed, failed int) map[string]any {
		return map[string]any{"completed_calls": completed, "failed_calls": failed}
	}
	step(0, "POST", "/runs", dialer1, map[string]any{"run_id": run1, "worker_id": "dialer-1", "total_calls": 100}, 201)
	step(10*time.Second, "POST", "/runs/"+run1+"/heartbeat", dialer1, hb(10, 1), 200)
	step(10*time.Second, "POST", "/runs/"+run1+"/heartbeat", dialer1, hb(20, 2), 200)
	// The worker dies at 09:00:20; the reaper of replica-a finds it 15m3s later.
	e.clock.Advance(15*time.Minute + 3*time.Second)
	r, err := reaper.New(reaper.Config{Runner: e.runner, Interval: time.Second, Instance: "replica-a", NoLock: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Sweep(context.Background()); err != nil || res.Reaped != 1 {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	step(time.Minute, "POST", "/runs", dialer2, map[string]any{"run_id": run2, "worker_id": "dialer-2", "total_calls": 50}, 201)
	step(30*time.Second, "POST", "/runs/"+run2+"/heartbeat", dialer2, hb(5, 0), 200)
	step(5*time.Second, "POST", "/runs/"+run2+"/pause", alice, map[string]any{"reason": "supervisor check"}, 200)
	step(10*time.Second, "POST", "/runs/"+run2+"/heartbeat", dialer2, hb(5, 0), 200)
	step(10*time.Second, "POST", "/runs/"+run2+"/resume", alice, nil, 200)
	step(5*time.Second, "POST", "/runs/"+run2+"/cancel", alice, map[string]any{"reason": "wrong list"}, 202)
	step(2*time.Second, "POST", "/runs/"+run2+"/heartbeat", dialer2, hb(6, 0), 200)
	step(time.Second, "POST", "/runs/"+run2+"/complete", dialer2, map[string]any{"outcome": "cancelled", "completed_calls": 6, "failed_calls": 0}, 200)
	step(time.Minute, "POST", "/runs", dialer2, map[string]any{"run_id": run3, "worker_id": "dialer-2", "total_calls": 3,
		"stall_after": "1m"}, 201)
	step(30*time.Second, "POST", "/runs/"+run3+"/heartbeat", dialer2, hb(0, 0), 200)
	step(34*time.Second, "POST", "/runs/"+run3+"/heartbeat", dialer2, hb(0, 0), 200) // stalled since 09:19:26
	step(20*time.Second, "POST", "/runs/"+run3+"/heartbeat", dialer2, hb(1, 0), 200)
	step(20*time.Second, "POST", "/runs/"+run3+"/complete", dialer2, map[string]any{"outcome": "completed", "completed_calls": 2, "failed_calls": 1}, 200)
}

// The audit a support person reads (`runledger audit`: the timeline, then
// replays at instants), for a history made through the API.
func TestAuditGolden(t *testing.T) {
	e := newEnv(t)
	playHistory(t, e)
	ctx := context.Background()
	store := eventstore.New(e.pool)
	var out bytes.Buffer
	entries, err := audit.Timeline(ctx, store, eventstore.BusinessQuery{BusinessID: "acme"}, domain.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("== timeline\n")
	if err := audit.WriteTimeline(&out, entries); err != nil {
		t.Fatal(err)
	}
	for _, at := range []struct{ label, at string }{
		{"before the gap", "2026-11-28T09:00:15Z"},
		{"in the gap, within the TTL", "2026-11-28T09:10:20Z"},
		{"in the gap, past the TTL, before the reaper", "2026-11-28T09:15:21Z"},
		{"after the stale failure", "2026-11-28T09:15:30Z"},
		{"during the cancelled run", "2026-11-28T09:16:50Z"},
		{"during the pause", "2026-11-28T09:17:05Z"},
		{"while the third run is stalled", "2026-11-28T09:19:40Z"},
		{"after completion", "2026-11-28T09:21:00Z"},
	} {
		ts, _ := time.Parse(time.RFC3339, at.at)
		res, err := audit.Replay(ctx, store, "acme", ts, domain.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("\n== --at " + at.at + " (" + at.label + ")\n")
		if err := audit.WriteReplay(&out, res); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "audit.golden", out.Bytes())

	// The API's timeline carries the same actors for machines.
	tl := e.must(e.do("GET", "/v1/businesses/acme/timeline", e.token("*", api.RoleOperator), nil), 200, "")
	raw, _ := json.Marshal(tl.body["events"])
	for _, actor := range []string{`"actor":"worker:dialer-1"`, `"actor":"reaper:replica-a"`, `"actor":"user:alice"`, `"actor":"worker:dialer-2"`} {
		if !strings.Contains(string(raw), actor) {
			t.Errorf("timeline JSON lacks %s", actor)
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (run with -update to accept):\n%s", path, lineDiff(string(want), string(got)))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("- " + wl + "\n+ " + gl + "\n")
		}
	}
	return b.String()
}

// The timeline pages with the same cursor codec as the run list, without
// losing or repeating an event.
func TestTimelinePagination(t *testing.T) {
	e := newEnv(t)
	playHistory(t, e)
	op := e.token("*", api.RoleOperator)
	all := e.must(e.do("GET", "/v1/businesses/acme/timeline", op, nil), 200, "")
	var want, got []float64
	for _, ev := range all.body["events"].([]any) {
		want = append(want, ev.(map[string]any)["position"].(float64))
	}
	cursor := ""
	for page := 0; page < 10; page++ {
		path := "/v1/businesses/acme/timeline?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := e.must(e.do("GET", path, op, nil), 200, "")
		for _, ev := range r.body["events"].([]any) {
			got = append(got, ev.(map[string]any)["position"].(float64))
		}
		cursor, _ = r.body["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if len(want) != 17 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	e.must(e.do("GET", "/v1/businesses/acme/timeline?cursor=bm9wZQ", op, nil), 400, "validation_failed")
}

// Runs started in the same millisecond (UUIDv7 ids that share their first
// 12 digits), and 50 runs in one second: the audit names every run by a
// short form of its own, and lists the full ids once.
func TestAuditShortIDsGolden(t *testing.T) {
	e := newEnv(t)
	worker := e.tokenFor(api.TokenSpec{Business: "twins", Role: api.RoleWorker, Subject: "dialer-7"})
	play := func(business, token string, ids []string, gap time.Duration) {
		t.Helper()
		for _, id := range ids {
			e.must(e.do("POST", "/v1/businesses/"+business+"/runs", token, map[string]any{"run_id": id, "worker_id": "dialer-7", "total_calls": 1}), 201, "")
			e.clock.Advance(gap)
			e.must(e.do("POST", "/v1/businesses/"+business+"/runs/"+id+"/complete", token,
				map[string]any{"outcome": "completed", "completed_calls": 1, "failed_calls": 0}), 200, "")
			e.clock.Advance(gap)
		}
	}
	play("twins", worker, []string{"01a222ec-1f00-7abc-8def-0123456789ab", "01a222ec-1f00-7123-9456-fedcba987654"}, 0)
	var fifty []string
	for i := 0; i < 50; i++ {
		fifty = append(fifty, fmt.Sprintf("01a222ec-%04x-7000-8000-0000%08x", 0x1f00+i/10, i*7919))
	}
	play("fifty", e.tokenFor(api.TokenSpec{Business: "fifty", Role: api.RoleWorker, Subject: "dialer-7"}), fifty, 10*time.Millisecond)

	var out bytes.Buffer
	for _, business := range []string{"twins", "fifty"} {
		entries, err := audit.Timeline(context.Background(), eventstore.New(e.pool), eventstore.BusinessQuery{BusinessID: business}, domain.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		var text bytes.Buffer
		if err := audit.WriteTimeline(&text, entries); err != nil {
			t.Fatal(err)
		}
		assertDistinctShortForms(t, text.String(), entries)
		out.WriteString("== " + business + "\n")
		out.Write(text.Bytes())
	}
	golden(t, "audit-short-ids.golden", out.Bytes())
}

// assertDistinctShortForms checks that each run's lines carry one short
// form, that no two runs share one, and that the legend gives each run's
// full id once.
func assertDistinctShortForms(t *testing.T, text string, entries []audit.TimelineEntry) {
	t.Helper()
	formOf := map[string]string{} // run id → short form
	lines := strings.Split(text, "\n")
	for i, e := range entries {
		fields := strings.Fields(lines[len(lines)-1-len(entries)+i])
		form := fields[2]
		if prev, ok := formOf[e.RunID.String()]; ok && prev != form {
			t.Fatalf("run %s named %s and %s", e.RunID, prev, form)
		}
		formOf[e.RunID.String()] = form
		if !strings.HasSuffix(strings.ReplaceAll(e.RunID.String(), "-", ""), form) {
			t.Fatalf("short form %s is not the tail of %s", form, e.RunID)
		}
	}
	seen := map[string]string{}
	for id, form := range formOf {
		if other, ok := seen[form]; ok {
			t.Fatalf("runs %s and %s share the short form %s", id, other, form)
		}
		seen[form] = id
		if strings.Count(text, id) != 1 {
			t.Fatalf("the full id %s appears %d times, want once (the legend)", id, strings.Count(text, id))
		}
	}
}
