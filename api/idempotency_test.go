package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/runs"
)

func keyed(key string) http.Header { return http.Header{"Idempotency-Key": {key}} }

// countEvents is the number of events of one type in the log.
func (e *env) countEvents(typ string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE type = $1`, typ).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// The same key with the same request answers the first answer (status,
// body, the handler's headers), and the command does not run again: the
// clock moves between the two, so a second run would answer another
// server_time (and for start and complete, another status).
func TestIdempotencySameKeyReplaysFirstAnswer(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	worker, user := e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser)
	first := e.must(e.doWith("POST", b+"/runs", worker, map[string]any{"total_calls": 10, "worker_id": "w1"}, keyed("start-1")), 201, "")
	id := first.str("run_id")
	steps := []struct {
		name, path, token string
		body              map[string]any
		status            int
		// without the key, repeating would answer this instead
		unkeyedRepeat int
	}{
		{"start", b + "/runs", worker, map[string]any{"total_calls": 10, "worker_id": "w1"}, 201, 409},
		{"heartbeat", b + "/runs/" + id + "/heartbeat", worker, map[string]any{"completed_calls": 3, "failed_calls": 1}, 200, 200},
		{"cancel", b + "/runs/" + id + "/cancel", user, map[string]any{"reason": "stop"}, 202, 202},
		{"complete", b + "/runs/" + id + "/complete", worker, map[string]any{"outcome": "cancelled", "completed_calls": 3, "failed_calls": 1}, 200, 409},
	}
	for i, st := range steps {
		key := "start-1"
		var firstAnswer response
		if i == 0 {
			firstAnswer = first
		} else {
			e.clock.Advance(10 * time.Second) // a heartbeat is stored, not coalesced
			key = st.name + "-1"
			firstAnswer = e.must(e.doWith("POST", st.path, st.token, st.body, keyed(key)), st.status, "")
		}
		events := e.eventCount()
		e.clock.Advance(time.Second)
		again := e.must(e.doWith("POST", st.path, st.token, st.body, keyed(key)), st.status, "")
		if !bytes.Equal(again.raw, firstAnswer.raw) {
			t.Fatalf("%s: replay answered\n%s\nfirst answer was\n%s", st.name, again.raw, firstAnswer.raw)
		}
		if again.header.Get("Idempotent-Replayed") != "true" || firstAnswer.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("%s: Idempotent-Replayed = %q on the replay, %q on the first answer", st.name,
				again.header.Get("Idempotent-Replayed"), firstAnswer.header.Get("Idempotent-Replayed"))
		}
		for _, h := range []string{"Content-Type", "Location"} {
			if again.header.Get(h) != firstAnswer.header.Get(h) {
				t.Fatalf("%s: replayed %s = %q, first %q", st.name, h, again.header.Get(h), firstAnswer.header.Get(h))
			}
		}
		if n := e.eventCount(); n != events {
			t.Fatalf("%s: the replay appended %d events", st.name, n-events)
		}
		if st.unkeyedRepeat != st.status {
			e.must(e.do("POST", st.path, st.token, st.body), st.unkeyedRepeat, "") // the replay was not luck
		}
	}
	if first.header.Get("Location") != b+"/runs/"+id {
		t.Fatalf("Location = %q", first.header.Get("Location"))
	}
	if e.countEvents("RunStarted") != 1 || e.countEvents("RunCompleted") != 1 {
		t.Fatalf("log has %d RunStarted, %d RunCompleted", e.countEvents("RunStarted"), e.countEvents("RunCompleted"))
	}
}

func TestIdempotencyKeyReusedWithAnotherBody(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	worker := e.token("acme", api.RoleWorker)
	e.must(e.doWith("POST", b+"/runs", worker, map[string]any{"total_calls": 10, "worker_id": "w1"}, keyed("k")), 201, "")
	before := e.state()
	r := e.must(e.doWith("POST", b+"/runs", worker, map[string]any{"total_calls": 11, "worker_id": "w1"}, keyed("k")), 422, "idempotency_key_reused")
	if !strings.Contains(r.str("detail"), `"k"`) {
		t.Fatalf("detail does not name the key: %s", r.raw)
	}
	e.unchanged(before, "a reused key changed the log or the read models")
}

// Concurrent requests with one key: the command runs once and every request
// gets its answer. Without the key, the starts would answer one 201 and
// 409s, the completes one 200 and 409s.
func TestIdempotencyConcurrentRequestsOneAppend(t *testing.T) {
	e := newEnv(t)
	b := "/v1/businesses/acme"
	worker := e.token("acme", api.RoleWorker)
	const n = 8
	race := func(path string, body map[string]any, key string) []response {
		out := make([]response, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i] = e.doWith("POST", path, worker, body, keyed(key))
			}()
		}
		close(start)
		wg.Wait()
		for i, r := range out {
			if r.status != out[0].status || !bytes.Equal(r.raw, out[0].raw) {
				t.Fatalf("answer %d = %d %s; answer 0 = %d %s", i, r.status, r.raw, out[0].status, out[0].raw)
			}
		}
		return out
	}
	started := race(b+"/runs", map[string]any{"total_calls": 5, "worker_id": "w1"}, "start")
	if started[0].status != 201 || e.countEvents("RunStarted") != 1 {
		t.Fatalf("start answered %d; log has %d RunStarted", started[0].status, e.countEvents("RunStarted"))
	}
	id := started[0].str("run_id")
	done := race(b+"/runs/"+id+"/complete", map[string]any{"outcome": "completed", "completed_calls": 5, "failed_calls": 0}, "complete")
	if done[0].status != 200 || e.countEvents("RunCompleted") != 1 {
		t.Fatalf("complete answered %d; log has %d RunCompleted", done[0].status, e.countEvents("RunCompleted"))
	}
}

// A key is scoped by business and endpoint: the same key elsewhere is
// another key.
func TestIdempotencyKeyScope(t *testing.T) {
	e := newEnv(t)
	acme := e.must(e.doWith("POST", "/v1/businesses/acme/runs", e.token("acme", api.RoleWorker),
		map[string]any{"total_calls": 1, "worker_id": "w1"}, keyed("same")), 201, "")
	globex := e.must(e.doWith("POST", "/v1/businesses/globex/runs", e.token("globex", api.RoleWorker),
		map[string]any{"total_calls": 2, "worker_id": "w2"}, keyed("same")), 201, "")
	if globex.header.Get("Idempotent-Replayed") != "" || globex.str("business_id") != "globex" {
		t.Fatalf("globex got acme's answer: %s", globex.raw)
	}
	// An operator token may act on every business: still one scope per business.
	op := e.token("*", api.RoleOperator)
	id := acme.str("run_id")
	e.must(e.doWith("POST", "/v1/businesses/acme/runs/"+id+"/cancel", op, nil, keyed("same")), 202, "")
	e.must(e.doWith("POST", "/v1/businesses/globex/runs/"+globex.str("run_id")+"/cancel", op, nil, keyed("same")), 202, "")
	// Same business, other endpoint: independent too.
	e.must(e.doWith("POST", "/v1/businesses/acme/runs/"+id+"/complete", e.token("acme", api.RoleWorker),
		map[string]any{"outcome": "cancelled", "completed_calls": 0, "failed_calls": 0}, keyed("same")), 200, "")
	if e.countEvents("RunStarted") != 2 || e.countEvents("CancelRequested") != 2 || e.countEvents("RunCompleted") != 1 {
		t.Fatal("a key used on one business or endpoint affected another")
	}
}

// The key is checked after authorization: a caller who may not make the
// request never sees a stored answer.
func TestIdempotencyAfterAuthorization(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"total_calls": 1, "worker_id": "w1"}
	e.must(e.doWith("POST", "/v1/businesses/acme/runs", e.token("acme", api.RoleWorker), body, keyed("k")), 201, "")
	e.must(e.doWith("POST", "/v1/businesses/acme/runs", e.token("acme", api.RoleUser), body, keyed("k")), 403, "forbidden")
	e.must(e.doWith("POST", "/v1/businesses/acme/runs", e.token("globex", api.RoleWorker), body, keyed("k")), 404, "not_found")
	e.must(e.doWith("POST", "/v1/businesses/acme/runs", "", body, keyed("k")), 401, "unauthorized")
}

func TestIdempotencyKeyValidation(t *testing.T) {
	e := newEnv(t)
	worker := e.token("acme", api.RoleWorker)
	body := map[string]any{"total_calls": 1, "worker_id": "w1"}
	before := e.state()
	for name, h := range map[string]http.Header{
		"empty":         {"Idempotency-Key": {""}},
		"too long":      {"Idempotency-Key": {strings.Repeat("k", 256)}},
		"not ascii":     {"Idempotency-Key": {"clé"}},
		"sent twice":    {"Idempotency-Key": {"a", "b"}},
		"tab in middle": {"Idempotency-Key": {"a\tb"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.must(e.doWith("POST", "/v1/businesses/acme/runs", worker, body, h), 400, "validation_failed")
			var p api.Problem
			_ = json.Unmarshal(r.raw, &p)
			if len(p.Errors) == 0 || p.Errors[0].Field != "Idempotency-Key" {
				t.Fatalf("problem does not name the header: %s", r.raw)
			}
		})
	}
	e.unchanged(before, "an invalid key changed the log or the read models")
	e.must(e.doWith("POST", "/v1/businesses/acme/runs", worker, body, keyed(strings.Repeat("~", 255))), 201, "")
}

// An answer of 500 is not kept: the retry with the same key runs afresh.
func TestIdempotencyServerErrorIsRetryable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `
		CREATE FUNCTION refuse_append() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;
		CREATE TRIGGER refuse_append BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_append();`); err != nil {
		t.Fatal(err)
	}
	worker := e.token("acme", api.RoleWorker)
	body := map[string]any{"total_calls": 1, "worker_id": "w1"}
	e.must(e.doWith("POST", "/v1/businesses/acme/runs", worker, body, keyed("k")), 500, "internal")
	if _, err := e.pool.Exec(ctx, `DROP TRIGGER refuse_append ON events`); err != nil {
		t.Fatal(err)
	}
	r := e.must(e.doWith("POST", "/v1/businesses/acme/runs", worker, body, keyed("k")), 201, "")
	if r.header.Get("Idempotent-Replayed") != "" || e.countEvents("RunStarted") != 1 {
		t.Fatalf("the retry after a 500 did not run afresh: %s", r.raw)
	}
}

// Keys live 24 hours: an expired key is claimed afresh even before it is
// swept, and the sweep deletes expired keys only.
func TestIdempotencyKeysExpireAndAreSwept(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.start("acme", 1)
	hb := func(key string, completed int) response { // tokens live an hour: mint one at each call
		return e.doWith("POST", "/v1/businesses/acme/runs/"+a+"/heartbeat", e.token("acme", api.RoleWorker),
			map[string]any{"completed_calls": completed, "failed_calls": 0}, keyed(key))
	}
	e.must(hb("old", 0), 200, "")
	e.clock.Advance(23 * time.Hour)
	e.must(hb("young", 0), 200, "")
	e.must(hb("old", 1), 422, "idempotency_key_reused") // 23h: still kept

	e.clock.Advance(time.Hour)
	// Expired, not swept yet: another body under it is a new command.
	e.must(hb("old", 1), 200, "")
	keys := func() int {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if keys() != 2 {
		t.Fatalf("%d keys stored, want 2", keys())
	}
	e.clock.Advance(23*time.Hour + time.Second) // "young" is 24h+1s old, "old" (reclaimed) 23h+1s
	n, err := runs.NewIdempotencyKeys(e.pool).Sweep(ctx, e.clock.Now())
	if err != nil || n != 1 || keys() != 1 {
		t.Fatalf("sweep deleted %d (%v), %d left; want 1 deleted, 1 left", n, err, keys())
	}
	if n, err := runs.NewIdempotencyKeys(e.pool).Sweep(ctx, e.clock.Now()); err != nil || n != 0 {
		t.Fatalf("second sweep deleted %d (%v)", n, err)
	}
}

func TestPolicyEndpoint(t *testing.T) {
	e := newEnv(t)
	for _, tok := range []string{e.token("acme", api.RoleWorker), e.token("acme", api.RoleUser), e.token("*", api.RoleOperator)} {
		r := e.must(e.do("GET", "/v1/policy", tok, nil), 200, "")
		if r.str("stale_after") != "15m0s" || r.str("heartbeat_min_interval") != "5s" || r.str("stall_after") != "10m0s" {
			t.Fatalf("policy = %s", r.raw)
		}
	}
	e.must(e.do("GET", "/v1/policy", "", nil), 401, "unauthorized")
	e.must(e.do("GET", "/v1/policy", "garbage", nil), 401, "unauthorized")
}

// Keyed commands hold their key's transaction while they run, on the
// commands pool; however many arrive at once, they must leave connections
// for the appends they wait on. 16 keyed starts on a pool of 4: all 201,
// none waits for the request deadline.
func TestKeyedCommandsLeaveConnectionsForTheirAppends(t *testing.T) {
	e := newEnvWith(t, func(c *api.Config) {
		cfg, err := pgxpool.ParseConfig(c.Pool.Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = 4
		small, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(small.Close)
		c.Runner = runs.NewRunner(eventstore.New(small), domain.DefaultPolicy())
		c.CommandPool = small
		c.RequestTimeout = 3 * time.Second
	})
	const n = 16
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	began := time.Now()
	for i := range n {
		business := fmt.Sprintf("k%d", i)
		token := e.token(business, api.RoleWorker)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", e.url+"/v1/businesses/"+business+"/runs", strings.NewReader(`{"total_calls":3,"worker_id":"w"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Idempotency-Key", "start-"+business)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			res.Body.Close()
			statuses[i] = res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusCreated {
			t.Fatalf("keyed start %d answered %d (all: %v) after %s", i, s, statuses, time.Since(began).Round(time.Millisecond))
		}
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("16 keyed starts took %s: they waited for connections", took)
	}
}
