package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// FuzzRequestBodies sends arbitrary bodies to every command endpoint of a
// live service: nothing panics or answers 500, and a rejected body never
// appends to the log. Run it longer with:
//
//	go test ./api -run '^$' -fuzz FuzzRequestBodies -fuzztime 2m
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"total_calls":10,"worker_id":"w"}`, `{"run_id":"01930000-0000-7000-8000-000000000000","total_calls":1,"worker_id":"w"}`,
		`{"completed_calls":1,"failed_calls":0}`, `{"outcome":"completed","completed_calls":1,"failed_calls":0}`,
		`{"reason":"x"}`, `{"total_calls":-1}`, `{"total_calls":1e99,"worker_id":"w"}`, `{"completed_calls":"1"}`,
		`[]`, `null`, `{}{}`, `{"a":1}`, "\x00", `{"worker_id":"\ud800","total_calls":1}`, ``,
		`{"worker_id":"w\u0000","total_calls":1}`, `{"reason":"\u0000"}`, `{"outcome":"failed","error":"\u0000","completed_calls":0,"failed_calls":0}`,
		`{"total_calls":1,"worker_id":"w","stale_after":"2m","stall_after":"1m"}`, `{"total_calls":1,"worker_id":"w","stale_after":"-1s"}`,
		`{"total_calls":1,"worker_id":"w","stall_after":99}`, `{"reason":"lunch"}`,
	} {
		for ep := byte(0); ep < 6; ep++ {
			f.Add(ep, seed)
		}
	}
	e := newEnv(f)
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	run := e.start("acme", 1_000_000)
	paths := []string{"/runs", "/runs/" + run + "/heartbeat", "/runs/" + run + "/complete", "/runs/" + run + "/cancel",
		"/runs/" + run + "/pause", "/runs/" + run + "/resume"}
	f.Fuzz(func(t *testing.T, ep byte, body string) {
		ep %= byte(len(paths))
		tok := worker
		if ep >= 3 {
			tok = user
		}
		before := countEvents(t, e)
		req, _ := http.NewRequest("POST", e.url+"/v1/businesses/acme"+paths[ep], strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %q = %d %s", paths[ep], body, res.StatusCode, raw)
		}
		if res.StatusCode >= 400 && res.StatusCode != 409 && countEvents(t, e) != before {
			t.Fatalf("rejected body %q (%d %s) appended to the log", body, res.StatusCode, raw)
		}
		e.clock.Advance(time.Second)
	})
}

func countEvents(t *testing.T, e *env) int {
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
