package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

func TestContractRunLifecycle(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	worker, user, op := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser), e.token("*", api.RoleOperator)

	e.must(e.do("GET", b+"/runs/active", user, nil), 404, "no_active_run")
	started := e.must(e.do("POST", b+"/runs", worker, map[string]any{"total_calls": 10, "worker_id": "w1"}), 201, "")
	id := started.str("run_id")
	for _, k := range []string{"run_id", "business_id", "status", "cancel_requested", "total_calls", "completed_calls", "failed_calls",
		"pending_calls", "worker_id", "started_at", "last_heartbeat_at", "stale_at", "ended_at", "end_reason", "last_error", "version", "server_time"} {
		if _, ok := started.body[k]; !ok {
			t.Errorf("run JSON lacks %q", k)
		}
	}
	if started.str("status") != "running" || started.body["pending_calls"].(float64) != 10 ||
		started.str("stale_at") != "2026-11-28T09:15:00Z" || started.header.Get("Location") != b+"/runs/"+id {
		t.Fatalf("start answered %s (Location %q)", started.raw, started.header.Get("Location"))
	}
	conflict := e.must(e.do("POST", b+"/runs", worker, map[string]any{"total_calls": 5, "worker_id": "w2"}), 409, "active_run_exists")
	if conflict.str("run_id") != id {
		t.Fatalf("active_run_exists names %q, want %q", conflict.str("run_id"), id)
	}
	// Retrying a start with the same run id is harmless.
	e.must(e.do("POST", b+"/runs", worker, map[string]any{"run_id": id, "total_calls": 10, "worker_id": "w1"}), 200, "")
	e.must(e.do("POST", b+"/runs", worker, map[string]any{"run_id": id, "total_calls": 11, "worker_id": "w1"}), 409, "run_exists")
	e.caughtUp()

	active := e.must(e.do("GET", b+"/runs/active", user, nil), 200, "")
	if active.str("run_id") != id || active.body["active"] != true {
		t.Fatalf("active = %s", active.raw)
	}
	e.must(e.do("GET", b+"/runs/active", worker, nil), 200, "") // a worker may read its business's runs
	e.must(e.do("GET", b+"/runs/"+id, user, nil), 200, "")

	e.clock.Advance(10 * time.Second)
	hb := e.must(e.do("POST", b+"/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 3, "failed_calls": 1}), 200, "")
	if hb.body["cancel_requested"] != false || hb.obj("run")["pending_calls"].(float64) != 6 || hb.body["recorded"] != true {
		t.Fatalf("heartbeat = %s", hb.raw)
	}
	cancel := e.must(e.do("POST", b+"/runs/"+id+"/cancel", user, map[string]any{"reason": "user pressed cancel"}), 202, "")
	if cancel.body["cancel_requested"] != true || cancel.str("status") != "running" {
		t.Fatalf("graceful cancel = %s", cancel.raw)
	}
	e.must(e.do("POST", b+"/runs/"+id+"/cancel", user, nil), 202, "") // repeating is harmless
	hb = e.must(e.do("POST", b+"/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 4, "failed_calls": 1}), 200, "")
	if hb.body["cancel_requested"] != true {
		t.Fatalf("worker not told to stop: %s", hb.raw)
	}
	done := e.must(e.do("POST", b+"/runs/"+id+"/complete", worker,
		map[string]any{"outcome": "cancelled", "completed_calls": 4, "failed_calls": 1}), 200, "")
	if done.str("status") != "cancelled" || done.str("end_reason") != "cancelled" || done.body["stale_at"] != nil {
		t.Fatalf("complete = %s", done.raw)
	}
	// A zombie worker learns it lost the run, with the final state.
	for _, path := range []string{"/heartbeat", "/complete"} {
		body := map[string]any{"completed_calls": 5, "failed_calls": 1}
		if path == "/complete" {
			body["outcome"] = "completed"
		}
		ended := e.must(e.do("POST", b+"/runs/"+id+path, worker, body), 409, "run_ended")
		if ended.obj("run")["status"] != "cancelled" {
			t.Fatalf("run_ended without the final run: %s", ended.raw)
		}
	}
	e.must(e.do("POST", b+"/runs/"+id+"/cancel", user, nil), 409, "run_ended")
	e.caughtUp()
	e.must(e.do("GET", b+"/runs/active", user, nil), 404, "no_active_run")
	got := e.must(e.do("GET", b+"/runs/"+id, user, nil), 200, "")
	if got.str("status") != "cancelled" || got.body["completed_calls"].(float64) != 4 {
		t.Fatalf("run after the end = %s", got.raw)
	}

	events := e.must(e.do("GET", b+"/runs/"+id+"/events", user, nil), 200, "")
	var types []string
	for _, ev := range events.body["events"].([]any) {
		types = append(types, ev.(map[string]any)["type"].(string))
	}
	if want := "RunStarted Heartbeat CancelRequested Heartbeat RunCompleted"; strings.Join(types, " ") != want {
		t.Fatalf("events = %v, want %s", types, want)
	}

	tl := e.must(e.do("GET", b+"/timeline", op, nil), 200, "")
	if n := len(tl.body["events"].([]any)); n != 5 {
		t.Fatalf("timeline has %d events", n)
	}
	rp := e.must(e.do("GET", b+"/replay?at=2026-11-28T09:00:05Z", op, nil), 200, "")
	if rp.body["answer_status"].(float64) != 200 || rp.body["active"] != true {
		t.Fatalf("replay during the run = %s", rp.raw)
	}
	e.must(e.do("GET", b+"/replay", op, nil), 400, "validation_failed")
	e.must(e.do("GET", b+"/timeline", user, nil), 403, "forbidden")
}

func TestContractListPagination(t *testing.T) {
	e := newEnv(t)
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	var ids []string
	for i := 0; i < 5; i++ {
		id := e.start("acme", 1)
		e.clock.Advance(time.Second)
		e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/complete", worker,
			map[string]any{"outcome": "completed", "completed_calls": 1, "failed_calls": 0}), 200, "")
		ids = append([]string{id}, ids...) // newest first
	}
	e.caughtUp()
	var seen []string
	cursor := ""
	for page := 0; page < 5; page++ {
		path := "/v1/businesses/acme/runs?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := e.must(e.do("GET", path, user, nil), 200, "")
		for _, run := range r.body["runs"].([]any) {
			seen = append(seen, run.(map[string]any)["run_id"].(string))
		}
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Fatalf("pages = %v, want %v", seen, ids)
	}
	e.must(e.do("GET", "/v1/businesses/acme/runs?limit=0", user, nil), 400, "validation_failed")
	e.must(e.do("GET", "/v1/businesses/acme/runs?cursor=%21%21", user, nil), 400, "validation_failed")
}

// The production story: a worker dies, the reaper is late or stopped, and the
// bar must still go away; cancel then ends the run at once.
func TestStuckBarStory(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	user := e.token("acme", api.RoleUser)
	id := e.start("acme", 100)
	e.clock.Advance(5 * time.Minute)
	e.must(e.do("POST", b+"/runs/"+id+"/heartbeat", e.token("acme", api.RoleWorker), map[string]any{"completed_calls": 30, "failed_calls": 0}), 200, "")
	e.caughtUp()
	e.must(e.do("GET", b+"/runs/active", user, nil), 200, "")

	e.clock.Advance(15*time.Minute + time.Second) // the worker died; no reaper runs
	e.must(e.do("GET", b+"/runs/active", user, nil), 404, "no_active_run")
	stored := e.must(e.do("GET", b+"/runs/"+id, user, nil), 200, "")
	if stored.str("status") != "running" || stored.body["active"] != false || stored.body["completed_calls"].(float64) != 30 {
		t.Fatalf("stored run = %s", stored.raw)
	}
	forced := e.must(e.do("POST", b+"/runs/"+id+"/cancel", user, nil), 200, "")
	if forced.str("status") != "cancelled" || forced.str("end_reason") != "cancel_forced" {
		t.Fatalf("forced cancel = %s", forced.raw)
	}
	e.caughtUp()
	e.must(e.do("GET", b+"/runs/active", user, nil), 404, "no_active_run")
	// And a new run can start straight away.
	e.must(e.do("POST", b+"/runs", e.token("acme", api.RoleWorker), map[string]any{"total_calls": 1, "worker_id": "w2"}), 201, "")
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	id := e.start("acme", 3)
	b := "/v1/businesses/acme"
	expired, _ := api.NewAuthenticator(secret, func() time.Time { return t0.Add(-2 * time.Hour) })
	old, _ := expired.Mint("acme", api.RoleUser, time.Hour)
	other, _ := api.NewAuthenticator(strings.Repeat("x", 40), nil)
	forged, _ := other.Mint("acme", api.RoleUser, time.Hour)
	for name, tok := range map[string]string{"none": "", "garbage": "not.a.jwt", "expired": old, "wrong secret": forged} {
		t.Run(name, func(t *testing.T) {
			e.must(e.do("GET", b+"/runs/active", tok, nil), 401, "unauthorized")
		})
	}
	cases := []struct {
		method, path string
		role         api.Role
		body         any
	}{
		{"POST", b + "/runs", api.RoleUser, map[string]any{"total_calls": 1, "worker_id": "w"}},
		{"POST", b + "/runs/" + id + "/heartbeat", api.RoleUser, map[string]any{"completed_calls": 1, "failed_calls": 0}},
		{"POST", b + "/runs/" + id + "/complete", api.RoleOperator, map[string]any{"outcome": "completed", "completed_calls": 1, "failed_calls": 0}},
		{"POST", b + "/runs/" + id + "/cancel", api.RoleWorker, nil},
		{"GET", b + "/timeline", api.RoleUser, nil},
		{"GET", b + "/replay?at=2026-11-28T09:00:00Z", api.RoleWorker, nil},
	}
	for _, c := range cases {
		t.Run(string(c.role)+" "+c.method+" "+c.path, func(t *testing.T) {
			e.must(e.do(c.method, c.path, e.token("acme", c.role), c.body), 403, "forbidden")
		})
	}
	if _, err := e.auth.Mint("*", api.RoleUser, time.Hour); err == nil {
		t.Fatal("minted a user token for every business")
	}
}

// Every endpoint of business A, called with a token of business B, answers
// 404 and changes nothing.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	id := e.start("acme", 3)
	b := "/v1/businesses/acme"
	before := e.state()
	for _, role := range []api.Role{api.RoleWorker, api.RoleUser, api.RoleOperator} {
		tok := e.token("globex", role)
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", b + "/runs", map[string]any{"total_calls": 1, "worker_id": "w"}},
			{"GET", b + "/runs/active", nil},
			{"GET", b + "/runs/active/stream", nil},
			{"GET", b + "/runs", nil},
			{"GET", b + "/runs/" + id, nil},
			{"POST", b + "/runs/" + id + "/heartbeat", map[string]any{"completed_calls": 3, "failed_calls": 0}},
			{"POST", b + "/runs/" + id + "/complete", map[string]any{"outcome": "completed", "completed_calls": 3, "failed_calls": 0}},
			{"POST", b + "/runs/" + id + "/cancel", nil},
			{"GET", b + "/runs/" + id + "/events", nil},
			{"GET", b + "/timeline", nil},
			{"GET", b + "/replay?at=2026-11-28T09:00:00Z", nil},
		} {
			r := e.do(c.method, c.path, tok, c.body)
			if r.status != 404 || r.str("code") != "not_found" || strings.Contains(string(r.raw), id) {
				t.Errorf("%s token of globex: %s %s = %d %s", role, c.method, c.path, r.status, r.raw)
			}
		}
	}
	// Their own paths do not reach acme's run either.
	globex := e.token("globex", api.RoleUser)
	e.must(e.do("GET", "/v1/businesses/globex/runs/"+id, globex, nil), 404, "not_found")
	e.must(e.do("POST", "/v1/businesses/globex/runs/"+id+"/cancel", globex, nil), 404, "not_found")
	e.must(e.do("GET", "/v1/businesses/globex/runs/"+id+"/events", globex, nil), 404, "not_found")
	e.unchanged(before, "another business's calls changed acme's data")
}

func TestInputHygiene(t *testing.T) {
	e := newEnv(t)
	id := e.start("acme", 10)
	worker := e.token("acme", api.RoleWorker)
	b := "/v1/businesses/acme"
	huge := `{"total_calls": 1, "worker_id": "` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		name, method, path, body, contentType string
		status                                int
		code, field                           string
	}{
		{"unknown field", "POST", b + "/runs", `{"total_calls":1,"worker_id":"w","color":"red"}`, "", 400, "validation_failed", "color"},
		{"wrong type", "POST", b + "/runs", `{"total_calls":"ten","worker_id":"w"}`, "", 400, "validation_failed", "total_calls"},
		{"fraction", "POST", b + "/runs", `{"total_calls":1.5,"worker_id":"w"}`, "", 400, "validation_failed", "total_calls"},
		{"missing field", "POST", b + "/runs", `{"worker_id":"w"}`, "", 400, "validation_failed", "total_calls"},
		{"negative total", "POST", b + "/runs", `{"total_calls":-1,"worker_id":"w"}`, "", 400, "validation_failed", "total_calls"},
		{"bad run id in body", "POST", b + "/runs", `{"run_id":"nope","total_calls":1,"worker_id":"w"}`, "", 400, "validation_failed", "run_id"},
		{"not json", "POST", b + "/runs", `{"total_calls":`, "", 400, "invalid_request", ""},
		{"two objects", "POST", b + "/runs", `{"total_calls":1,"worker_id":"w"}{}`, "", 400, "invalid_request", ""},
		{"array", "POST", b + "/runs", `[1]`, "", 400, "invalid_request", ""},
		{"too large", "POST", b + "/runs", huge, "", 413, "body_too_large", ""},
		{"wrong content type", "POST", b + "/runs", `{"total_calls":1,"worker_id":"w"}`, "text/plain", 415, "unsupported_media_type", ""},
		{"malformed run id in path", "POST", b + "/runs/123/heartbeat", `{"completed_calls":1,"failed_calls":0}`, "", 400, "validation_failed", "run_id"},
		{"malformed business", "GET", "/v1/businesses/a%20b/runs/active", "", "", 400, "validation_failed", "business_id"},
		{"negative count", "POST", b + "/runs/" + id + "/heartbeat", `{"completed_calls":-1,"failed_calls":0}`, "", 400, "validation_failed", "completed_calls"},
		{"past the total", "POST", b + "/runs/" + id + "/heartbeat", `{"completed_calls":8,"failed_calls":3}`, "", 400, "validation_failed", "completed_calls"},
		{"bad outcome", "POST", b + "/runs/" + id + "/complete", `{"outcome":"done","completed_calls":1,"failed_calls":0}`, "", 400, "validation_failed", "outcome"},
		{"cancel unknown field", "POST", b + "/runs/" + id + "/cancel", `{"why":"x"}`, "", 400, "validation_failed", "why"},
	}
	before := e.state()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := worker
			if strings.HasSuffix(c.path, "/cancel") || strings.HasSuffix(c.path, "/active") {
				tok = e.token("acme", api.RoleUser)
			}
			req, _ := http.NewRequest(c.method, e.url+c.path, strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+tok)
			ct := c.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var p api.Problem
			_ = json.NewDecoder(res.Body).Decode(&p)
			if res.StatusCode != c.status || p.Code != c.code {
				t.Fatalf("= %d %s (%s), want %d %s", res.StatusCode, p.Code, p.Detail, c.status, c.code)
			}
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Fatalf("errors %+v do not name %s", p.Errors, c.field)
			}
		})
	}
	e.unchanged(before, "a rejected request changed the log or the read models")
}

func TestServerSentEvents(t *testing.T) {
	e := newEnv(t)
	id := e.start("acme", 10)
	worker := e.token("acme", api.RoleWorker)
	events := e.openStream("acme")

	first := nextData(t, events)
	if first.event != "run" || first.run["run_id"] != id || first.id == "" {
		t.Fatalf("first event = %+v", first)
	}
	e.clock.Advance(6 * time.Second)
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/heartbeat", worker, map[string]any{"completed_calls": 4, "failed_calls": 0}), 200, "")
	change := nextData(t, events)
	if change.event != "run" || change.run["completed_calls"].(float64) != 4 || change.id <= first.id {
		t.Fatalf("change event = %+v", change)
	}
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/complete", worker,
		map[string]any{"outcome": "completed", "completed_calls": 10, "failed_calls": 0}), 200, "")
	last := nextData(t, events)
	if last.event != "ended" || last.run["status"] != "completed" {
		t.Fatalf("terminal event = %+v", last)
	}
	streamEnds(t, events)
	// No active run: a problem, not an empty stream.
	e.caughtUp()
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/stream", e.token("acme", api.RoleUser), nil), 404, "no_active_run")
}

func TestServerSentEventsEndWhenRunGoesSilent(t *testing.T) {
	e := newEnv(t)
	e.start("acme", 10)
	events := e.openStream("acme")
	nextData(t, events)
	e.clock.Advance(16 * time.Minute)
	last := nextData(t, events)
	if last.event != "inactive" || last.run["active"] != false {
		t.Fatalf("event after silence = %+v", last)
	}
	streamEnds(t, events)
}

// streamEnds fails unless the server closes the stream within 5 s, with
// nothing but keep-alive comments before it closes.
func streamEnds(t *testing.T, events <-chan sse) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.event != "" {
				t.Fatalf("stream went on after the terminal state: %+v", ev)
			}
		case <-timeout:
			t.Fatal("the stream did not end after its terminal event")
		}
	}
}

// openStream opens the business's active-run stream as a user and returns its
// events; the connection is closed when the test ends.
func (e *env) openStream(business string) <-chan sse {
	e.t.Helper()
	return e.openStreamAs(business, e.token(business, api.RoleUser))
}

// openStreamAs opens the business's active-run stream with token.
func (e *env) openStreamAs(business, token string) <-chan sse {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/v1/businesses/"+business+"/runs/active/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("stream answered %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan sse, 16)
	go readSSE(res.Body, events)
	return events
}

type sse struct {
	id, event string
	comment   bool
	run       map[string]any
}

func readSSE(body io.Reader, out chan<- sse) {
	defer close(out)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var cur sse
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" || cur.comment {
				out <- cur
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"):
			cur.comment = true
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.run)
		}
	}
}

// nextData skips keep-alive comments.
func nextData(t *testing.T, events <-chan sse) sse {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended before the next event")
			}
			if ev.event != "" {
				return ev
			}
		case <-timeout:
			t.Fatal("no event")
		}
	}
}

func TestOpsEndpoints(t *testing.T) {
	e := newEnv(t)
	e.start("acme", 1)
	e.must(e.do("GET", "/healthz", "", nil), 200, "")
	ready := e.must(e.do("GET", "/readyz", "", nil), 200, "")
	if ready.str("status") != "ready" {
		t.Fatalf("readyz = %s", ready.raw)
	}
	m := e.must(e.do("GET", "/metrics", "", nil), 200, "")
	for _, name := range []string{"runledger_http_request_duration_seconds", "runledger_runs_started_total 1",
		"runledger_active_runs 1", `runledger_projection_lag_events{projection="runs"} 0`, "runledger_oldest_open_run_silence_seconds",
		"runledger_stalled_runs 0", "runledger_sse_streams_open 0"} {
		if !strings.Contains(string(m.raw), name) {
			t.Errorf("metrics lack %q", name)
		}
	}
}

// The OpenAPI document describes exactly the routes the server registers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	doc := e.must(e.do("GET", "/v1/openapi.json", "", nil), 200, "")
	var documented []string
	for path, ops := range doc.body["paths"].(map[string]any) {
		for method := range ops.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	registered := e.server.Routes()
	sort.Strings(documented)
	sort.Strings(registered)
	if fmt.Sprint(documented) != fmt.Sprint(registered) {
		t.Fatalf("documented:\n%s\nregistered:\n%s", strings.Join(documented, "\n"), strings.Join(registered, "\n"))
	}
}

// Unknown paths and wrong methods answer problem+json like every error.
func TestUnknownRoutesAnswerProblems(t *testing.T) {
	e := newEnv(t)
	user := e.token("acme", api.RoleUser)
	e.must(e.do("GET", "/v1/nope", user, nil), 404, "not_found")
	e.must(e.do("GET", "/v1/businesses/acme/runs/active/extra", user, nil), 404, "not_found")
	r := e.must(e.do("DELETE", "/v1/businesses/acme/runs/active", user, nil), 405, "method_not_allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Fatalf("405 without Allow: %q", allow)
	}
	e.must(e.do("PUT", "/v1/businesses/acme/runs", user, "{}"), 405, "method_not_allowed")
}

// A token accepted once (and remembered) still expires on time.
func TestRememberedTokenStillExpires(t *testing.T) {
	e := newEnv(t)
	tok, err := e.auth.MintToken(api.TokenSpec{Business: "acme", Role: api.RoleUser, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e.must(e.do("GET", "/v1/businesses/acme/runs", tok, nil), 200, "")
	e.clock.Advance(time.Minute)
	e.must(e.do("GET", "/v1/businesses/acme/runs", tok, nil), 401, "unauthorized")
}
