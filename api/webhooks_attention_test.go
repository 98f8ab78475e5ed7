package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/webhooks"
)

// TestWebhooksNeedingAttention: endpoints put into each state by real
// deliveries (a healthy receiver, one answering 503, one answering 410 Gone)
// are read by operators across businesses: what each shows, who may read,
// its bounds, and that it reads on the reads pool only.
func TestWebhooksNeedingAttention(t *testing.T) {
	commands, cq := countingPool(t, pgtest.NewDB(t))
	policy := webhooks.Policy{AllowPrivate: true, AllowInsecure: true}
	e := newEnvOn(t, commands, func(c *api.Config) {
		c.Webhooks = &webhooks.Endpoints{Pool: commands, Now: c.Now, Policy: policy} // as serve has it
		c.Pool, _ = countingPool(t, c.Pool)
	})
	answering := func(status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	okURL, downURL, goneURL := answering(http.StatusNoContent), answering(http.StatusServiceUnavailable), answering(http.StatusGone)
	register := func(business, url, description string) string {
		return e.must(e.do("POST", "/v1/businesses/"+business+"/webhooks", e.token(business, api.RoleUser),
			map[string]any{"url": url, "events": []string{"run.started"}, "description": description}), 201, "").str("id")
	}
	register("acme", okURL, "archive")
	down := register("acme", downURL+"/hooks/runledger?token=receiver-token", "CRM")
	gone := register("globex", goneURL, "pager")

	op := e.token(api.AnyBusiness, api.RoleOperator)
	if r := e.must(e.do("GET", "/v1/webhooks/failing", op, nil), 200, ""); len(r.body["endpoints"].([]any)) != 0 || r.body["more"] != false {
		t.Fatalf("before any attempt: %s", r.raw)
	}

	proj, err := webhooks.NewProjector(e.pool, webhooks.ProjectorOptions{PollInterval: 50 * time.Millisecond, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	sender := &webhooks.Sender{Pool: e.pool, Policy: policy, Now: e.clock.Now, Jitter: func() float64 { return 0.5 }}
	e.start("acme", 3)
	e.start("globex", 3)
	sent := 0
	for deadline := time.Now().Add(30 * time.Second); sent < 3; time.Sleep(20 * time.Millisecond) {
		n, err := sender.SendDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if sent += n; time.Now().After(deadline) {
			t.Fatalf("%d of 3 deliveries made", sent)
		}
	}
	cancel()
	<-done // its polls would be counted on the commands pool below
	attempted := e.clock.Now().UTC().Format(time.RFC3339)
	e.clock.Advance(90 * time.Second)

	before := cq.n.Load()
	r := e.must(e.do("GET", "/v1/webhooks/failing", op, nil), 200, "")
	if n := cq.n.Load() - before; n != 0 {
		t.Errorf("GET /v1/webhooks/failing sent %d statements on the commands pool", n)
	}
	list := r.body["endpoints"].([]any)
	if len(list) != 2 || r.body["more"] != false || r.str("server_time") != e.clock.Now().UTC().Format(time.RFC3339) {
		t.Fatalf("listed: %s", r.raw)
	}
	for _, leak := range []string{"whsec_", "receiver-token", "/hooks/runledger", okURL} {
		if strings.Contains(string(r.raw), leak) {
			t.Errorf("the list shows %q: %s", leak, r.raw)
		}
	}
	a, g := list[0].(map[string]any), list[1].(map[string]any)
	last := func(item map[string]any) map[string]any { m, _ := item["last_attempt"].(map[string]any); return m }
	if a["business_id"] != "acme" || a["id"] != down || a["origin"] != downURL || a["description"] != "CRM" ||
		a["failing_since"] != attempted || a["disabled"] != false || a["disabled_at"] != nil ||
		last(a)["status_code"] != float64(503) || last(a)["at"] != attempted ||
		a["pending_deliveries"] != float64(1) || a["oldest_pending_at"] != attempted || a["oldest_pending_age_seconds"] != float64(90) {
		t.Errorf("acme's failing endpoint: %v", a)
	}
	if g["business_id"] != "globex" || g["id"] != gone || g["origin"] != goneURL || g["failing_since"] != nil ||
		g["disabled"] != true || g["disabled_reason"] != "the endpoint answered 410 Gone" || g["disabled_at"] != attempted ||
		last(g)["status_code"] != float64(410) || g["pending_deliveries"] != float64(0) || g["oldest_pending_at"] != nil ||
		g["oldest_pending_age_seconds"] != float64(0) {
		t.Errorf("globex's disabled endpoint: %v", g)
	}

	t.Run("bounded", func(t *testing.T) {
		r := e.must(e.do("GET", "/v1/webhooks/failing?limit=1", op, nil), 200, "")
		if got := r.body["endpoints"].([]any); len(got) != 1 || got[0].(map[string]any)["id"] != down || r.body["more"] != true {
			t.Fatalf("limit=1: %s", r.raw)
		}
		for _, q := range []string{"limit=0", "limit=101", "limit=ten"} {
			r := e.must(e.do("GET", "/v1/webhooks/failing?"+q, op, nil), 400, "validation_failed")
			if errs, _ := r.body["errors"].([]any); len(errs) == 0 || errs[0].(map[string]any)["field"] != "limit" {
				t.Errorf("%s: the problem does not name limit: %s", q, r.raw)
			}
		}
	})
	t.Run("roles and scope", func(t *testing.T) {
		for _, c := range []struct {
			name, token string
			status      int
			code        string
		}{
			{"no token", "", 401, "unauthorized"},
			{"user", e.token("acme", api.RoleUser), 403, "forbidden"},
			{"worker", e.token("acme", api.RoleWorker), 403, "forbidden"},
		} {
			if r := e.must(e.do("GET", "/v1/webhooks/failing", c.token, nil), c.status, c.code); strings.Contains(string(r.raw), down) {
				t.Errorf("%s: the refusal leaks an endpoint: %s", c.name, r.raw)
			}
		}
		for business, want := range map[string][]string{"acme": {down}, "globex": {gone}, "hooli": {}} {
			r := e.must(e.do("GET", "/v1/webhooks/failing", e.token(business, api.RoleOperator), nil), 200, "")
			var got []string
			for _, item := range r.body["endpoints"].([]any) {
				got = append(got, item.(map[string]any)["id"].(string))
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s's operator sees %v, want %v", business, got, want)
			}
		}
	})
}
