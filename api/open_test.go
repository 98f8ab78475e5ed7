package api_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// openRuns pages through GET /v1/runs/open with token and returns
// "business:run_id" in the order served.
func (e *env) openRuns(token string, limit int) []string {
	e.t.Helper()
	var out []string
	cursor := ""
	for page := 0; page < 50; page++ {
		path := fmt.Sprintf("/v1/runs/open?limit=%d", limit)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.must(e.do("GET", path, token, nil), 200, "")
		for _, run := range r.body["runs"].([]any) {
			m := run.(map[string]any)
			if m["stale_at"] == nil || m["status"] != "running" {
				e.t.Fatalf("open run without stale_at or not running: %v", m)
			}
			out = append(out, m["business_id"].(string)+":"+m["run_id"].(string))
		}
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			return out
		}
		cursor = next
	}
	e.t.Fatal("paging did not end")
	return nil
}

func TestOpenRunsLongestSilenceFirst(t *testing.T) {
	e := newEnv(t)
	worker := func(b string) string { return e.token(b, api.RoleWorker) }
	ids := map[string]string{}
	for _, b := range []string{"acme", "globex", "initech", "umbrella.co"} {
		ids[b] = e.start(b, 10)
		e.clock.Advance(10 * time.Second)
	}
	// acme heartbeats last, so it is the most recently alive; initech ends.
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+ids["acme"]+"/heartbeat", worker("acme"),
		map[string]any{"completed_calls": 1, "failed_calls": 0}), 200, "")
	e.must(e.do("POST", "/v1/businesses/initech/runs/"+ids["initech"]+"/complete", worker("initech"),
		map[string]any{"outcome": "completed", "completed_calls": 10, "failed_calls": 0}), 200, "")
	e.caughtUp()
	op := e.token(api.AnyBusiness, api.RoleOperator)
	want := []string{"globex:" + ids["globex"], "umbrella.co:" + ids["umbrella.co"], "acme:" + ids["acme"]}
	for _, limit := range []int{1, 2, 100} {
		if got := e.openRuns(op, limit); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("limit %d: open runs = %v, want %v", limit, got, want)
		}
	}

	// Past the TTL with no reaper: globex is silent, still open, listed
	// first and marked not active so an operator sees what is stuck.
	e.clock.Advance(15*time.Minute - 25*time.Second)
	r := e.must(e.do("GET", "/v1/runs/open", op, nil), 200, "")
	runs := r.body["runs"].([]any)
	first, last := runs[0].(map[string]any), runs[len(runs)-1].(map[string]any)
	if first["business_id"] != "globex" || first["active"] != false || first["stale_at"] != "2026-11-28T09:15:10Z" {
		t.Fatalf("first open run = %v", first)
	}
	if last["business_id"] != "acme" || last["active"] != true || r.body["next_cursor"] != nil {
		t.Fatalf("last open run = %v (next_cursor %v)", last, r.body["next_cursor"])
	}
}

func TestOpenRunsRolesAndScope(t *testing.T) {
	e := newEnv(t)
	acme, globex := e.start("acme", 3), e.start("globex", 3)
	for _, c := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", 401, "unauthorized"},
		{"user", e.token("acme", api.RoleUser), 403, "forbidden"},
		{"worker", e.token("acme", api.RoleWorker), 403, "forbidden"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.must(e.do("GET", "/v1/runs/open", c.token, nil), c.status, c.code)
			if strings.Contains(string(r.raw), acme) {
				t.Fatalf("refusal leaks a run: %s", r.raw)
			}
		})
	}
	t.Run("operator of one business", func(t *testing.T) {
		if got := e.openRuns(e.token("acme", api.RoleOperator), 10); strings.Join(got, " ") != "acme:"+acme {
			t.Fatalf("acme's operator sees %v", got)
		}
		if got := e.openRuns(e.token("hooli", api.RoleOperator), 10); len(got) != 0 {
			t.Fatalf("an operator of a business with no open run sees %v", got)
		}
	})
	t.Run("operator of every business", func(t *testing.T) {
		got := e.openRuns(e.token(api.AnyBusiness, api.RoleOperator), 10)
		if strings.Join(got, " ") != "acme:"+acme+" globex:"+globex {
			t.Fatalf("operator sees %v", got)
		}
	})
}

func TestOpenRunsInputValidation(t *testing.T) {
	e := newEnv(t)
	op := e.token(api.AnyBusiness, api.RoleOperator)
	for _, c := range []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=101", "limit"},
		{"limit=ten", "limit"},
		{"cursor=%21%21", "cursor"},
		{"cursor=bm9kb3Q", "cursor"},     // "nodot"
		{"cursor=MTIzLg", "cursor"},      // "123." (no business)
		{"cursor=YWJjLmFjbWU", "cursor"}, // "abc.acme"
	} {
		t.Run(c.query, func(t *testing.T) {
			r := e.must(e.do("GET", "/v1/runs/open?"+c.query, op, nil), 400, "validation_failed")
			errs, _ := r.body["errors"].([]any)
			if len(errs) == 0 || errs[0].(map[string]any)["field"] != c.field {
				t.Fatalf("problem does not name %s: %s", c.field, r.raw)
			}
		})
	}
}
