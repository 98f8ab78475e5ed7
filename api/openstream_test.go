package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runledger/runledger/api"
)

// openRunsStream opens GET /v1/runs/open/stream with token.
func (e *env) openRunsStream(token string) <-chan sse {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/v1/runs/open/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("open stream answered %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan sse, 16)
	go readSSE(res.Body, events)
	return events
}

// openBusinesses is the business of each run of an "open" event, in order.
func openBusinesses(t *testing.T, ev sse) []string {
	t.Helper()
	if ev.event != "open" {
		t.Fatalf("event %q, want open", ev.event)
	}
	if ev.run["server_time"] == nil {
		t.Fatalf("an open event without server_time: %v", ev.run)
	}
	var out []string
	for _, r := range ev.run["runs"].([]any) {
		out = append(out, r.(map[string]any)["business_id"].(string))
	}
	return out
}

func TestOpenRunsStream(t *testing.T) {
	e := newEnv(t)
	alpha := e.start("alpha", 5)
	events := e.openRunsStream(e.token("*", api.RoleOperator))
	if got := openBusinesses(t, nextData(t, events)); len(got) != 1 || got[0] != "alpha" {
		t.Fatalf("first event lists %v, want [alpha]", got)
	}
	// One business's operator sees that business only.
	mine := e.openRunsStream(e.token("bravo", api.RoleOperator))
	if got := openBusinesses(t, nextData(t, mine)); len(got) != 0 {
		t.Fatalf("bravo's operator first sees %v, want nothing", got)
	}

	// A run started elsewhere is pushed, longest silence first.
	e.clock.Advance(2e9)
	e.start("bravo", 3)
	if got := openBusinesses(t, nextData(t, events)); len(got) != 2 || got[0] != "alpha" || got[1] != "bravo" {
		t.Fatalf("after bravo's start: %v, want [alpha bravo]", got)
	}
	if got := openBusinesses(t, nextData(t, mine)); len(got) != 1 || got[0] != "bravo" {
		t.Fatalf("bravo's operator after the start: %v, want [bravo]", got)
	}

	// A run ended elsewhere leaves.
	e.must(e.do("POST", "/v1/businesses/alpha/runs/"+alpha+"/complete", e.token("alpha", api.RoleWorker),
		map[string]any{"outcome": "completed", "completed_calls": 5, "failed_calls": 0}), 200, "")
	if got := openBusinesses(t, nextData(t, events)); len(got) != 1 || got[0] != "bravo" {
		t.Fatalf("after alpha's end: %v, want [bravo]", got)
	}

	// Only operators; bad input changes nothing.
	e.must(e.do("GET", "/v1/runs/open/stream", e.token("alpha", api.RoleUser), nil), 403, "forbidden")
	e.must(e.do("GET", "/v1/runs/open/stream", "", nil), 401, "unauthorized")
	e.must(e.do("GET", "/v1/runs/open/stream?limit=0", e.token("*", api.RoleOperator), nil), 400, "validation_failed")
}

// openStreamReads is runledger_open_stream_reads_total, gathered from the
// server's registry itself: /metrics serves an observation up to a second old
// (observed.go), which would hide a read made in between.
func openStreamReads(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "runledger_open_stream_reads_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no runledger_open_stream_reads_total in the registry")
	return 0
}

// Open-runs streams cost no query while nothing changes: twenty operators
// idle through several keep-alives and the stream reads do not move; a start
// reaches every one of them.
func TestOpenRunsStreamIdleCostsNoQuery(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, func(c *api.Config) { c.MaxStreamsPerToken = 100; c.Registry = reg })
	e.start("alpha", 5)
	op := e.token("*", api.RoleOperator)
	var streams []<-chan sse
	for range 20 {
		ev := e.openRunsStream(op)
		if got := openBusinesses(t, nextData(t, ev)); len(got) != 1 {
			t.Fatalf("first event lists %v", got)
		}
		streams = append(streams, ev)
	}
	before := openStreamReads(t, reg)
	for _, ev := range streams { // three keep-alives each (50 ms apart here): idle time passed on every stream
		for seen := 0; seen < 3; {
			select {
			case c, ok := <-ev:
				if !ok {
					t.Fatal("a stream ended")
				}
				if c.event != "" {
					t.Fatalf("an event while nothing changed: %+v", c)
				}
				seen++
			case <-time.After(10 * time.Second):
				t.Fatal("no keep-alive")
			}
		}
	}
	if after := openStreamReads(t, reg); after != before {
		t.Fatalf("idle open-runs streams read the database: %v reads, then %v", before, after)
	}
	e.start("bravo", 3)
	for _, ev := range streams {
		if got := openBusinesses(t, nextData(t, ev)); len(got) != 2 {
			t.Fatalf("after a start, a stream lists %v", got)
		}
	}
	if after := openStreamReads(t, reg); after == before {
		t.Fatal("the start was pushed without a read")
	}
}
