package api_test

import (
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
)

// Reads of the log (a run's events, the timeline, the replay, the position
// check of a read given ?after=) and the metrics use the reads pool: the
// commands pool, whose connections the appends wait on, sends nothing.
func TestLogReadsUseTheReadsPool(t *testing.T) {
	commands, cq := countingPool(t, pgtest.NewDB(t))
	e := newEnvOn(t, commands, func(c *api.Config) { c.Pool, _ = countingPool(t, c.Pool) })
	id := e.start("acme", 3)
	hb := e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/heartbeat", e.token("acme", api.RoleWorker),
		map[string]any{"completed_calls": 1, "failed_calls": 0}), 200, "")
	e.caughtUp()
	e.stopProjector() // it has its own connections on the commands pool here
	after := "?after=" + hb.header.Get("Runledger-Position")
	user, op := e.token("acme", api.RoleUser), e.token("acme", api.RoleOperator)
	at := t0.Add(time.Second).Format(time.RFC3339)
	for _, read := range []struct{ path, token string }{
		{"/v1/businesses/acme/runs/" + id + "/events", user},
		{"/v1/businesses/acme/timeline", op},
		{"/v1/businesses/acme/replay?at=" + at, op},
		{"/v1/businesses/acme/runs/active" + after, user},
		{"/v1/businesses/acme/runs/" + id + after, user},
		{"/metrics", ""},
		{"/readyz", ""},
	} {
		before := cq.n.Load()
		e.must(e.do("GET", read.path, read.token, nil), 200, "")
		if n := cq.n.Load() - before; n != 0 {
			t.Errorf("GET %s sent %d statements on the commands pool", read.path, n)
		}
	}
}
